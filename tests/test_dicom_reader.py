"""DICOM and photo input: every supported transfer syntax decodes a real image; every refusal is typed.

All DICOM files are built at test time from the bundled HAM10000 samples and the 600x450 originals.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSNearLossless,
)

from skin_plugin.constants import INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.decode import ImageDecodeError, area_resize, decode_image
from skin_plugin.dicom.convert import PatientStudy, build_dataset, jpeg_to_dicom
from skin_plugin.dicom.reader import (
    ImageTooLargeError,
    InputError,
    NoPixelDataError,
    NotAPhotographError,
    NotDicomOrImageError,
    TruncatedFileError,
    UnreadableFileError,
    UnreadableImageError,
    UnsupportedTransferSyntaxError,
    jpeg_colour_markers,
    read_input,
)
from skin_plugin.dicom.records import DicomSourceInfo, validated_uid
from skin_plugin.dicom.sop_classes import (
    ACCEPTED_TRANSFER_SYNTAXES,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    refusal_reason,
)

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "samples"
FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"
SAMPLE = SAMPLES / "ISIC_0024306.jpg"
PHI_NAME, PHI_ID = "SECRETNAME^JANE", "MRN-98765"
MODEL_SHAPE = (INPUT_HEIGHT, INPUT_WIDTH, 3)


# --- building real test files ---------------------------------------------------------------------

def _rgb(path: Path = SAMPLE) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _dataset(pixels: np.ndarray, sop_class: str = SECONDARY_CAPTURE_IMAGE_STORAGE, modality: str = "OT",
             photometric: str = "RGB") -> Dataset:
    """An uncompressed Explicit VR Little Endian dataset of ``pixels``: (R,C,3), (F,R,C,3) or mono (R,C)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PHI_NAME, PHI_ID, "19700101"
    ds.Modality = modality
    multiframe = pixels.ndim == 4
    if multiframe:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[1:3] if multiframe else pixels.shape[:2]
    ds.SamplesPerPixel = 1 if photometric.startswith("MONO") else 3
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = pixels.tobytes()
    return ds


def _save(ds: Dataset, path: Path, **kwargs) -> Path:
    ds.save_as(path, enforce_file_format=True, **kwargs)
    return path


def _jpeg_dicom(path: Path, jpeg: bytes | None = None) -> Path:
    ds = build_dataset(jpeg if jpeg is not None else SAMPLE.read_bytes(), PatientStudy(PHI_NAME, PHI_ID))
    return _save(ds, path)


def _sof_to_extended(jpeg: bytes) -> bytes:
    """Relabel a baseline stream (SOF0) as extended sequential (SOF1): baseline is a subset of it."""
    pos = 2
    while jpeg[pos + 1] != 0xC0:
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return jpeg[:pos + 1] + b"\xc1" + jpeg[pos + 2:]


def encode_jpeg_lossless(rgb: np.ndarray, predictor: int) -> bytes:
    """Minimal JPEG lossless (ITU-T T.81 process 14) encoder: 8-bit, 3 interleaved components.

    Neither pydicom nor the installed plugins encode JPEG lossless, so the test writes the stream
    itself (Huffman table: the 9 difference categories with 4-bit codes), then lets pylibjpeg decode it.
    """
    x = rgb.astype(np.int32)
    ra, rb, rc = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    ra[:, 1:], rb[1:, :], rc[1:, 1:] = x[:, :-1], x[:-1, :], x[:-1, :-1]
    pred = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1), 6: rb + ((ra - rc) >> 1),
            7: (ra + rb) >> 1}[predictor].copy()
    pred[0, 1:], pred[1:, 0], pred[0, 0] = x[0, :-1], x[:-1, 0], 128  # first row: Ra, first column: Rb
    diff = (x - pred).ravel()
    ssss = np.where(diff == 0, 0, np.floor(np.log2(np.abs(diff) + 0.5)).astype(np.int64) + 1)
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << ssss) - 1)
    values, lengths = ((ssss << ssss) | extra).tolist(), (4 + ssss).tolist()
    out, acc, nbits = bytearray(), 0, 0
    for value, length in zip(values, lengths):
        acc, nbits = (acc << length) | value, nbits + length
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            out += b"\xff\x00" if byte == 0xFF else bytes([byte])
        acc &= (1 << nbits) - 1
    if nbits:
        byte = ((acc << (8 - nbits)) | ((1 << (8 - nbits)) - 1)) & 0xFF
        out += b"\xff\x00" if byte == 0xFF else bytes([byte])
    h, w = rgb.shape[:2]
    components = b"\x03" + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"  # 3 x (id, 1x1 sampling, table 0)
    sof = bytes([8]) + h.to_bytes(2, "big") + w.to_bytes(2, "big") + components
    dht = b"\x00" + bytes([0, 0, 0, 9] + [0] * 12) + bytes(range(9))
    sos = b"\x03\x01\x00\x02\x00\x03\x00" + bytes([predictor, 0, 0])

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    header = segment(0xC3, sof) + segment(0xC4, dht) + segment(0xDA, sos)
    return b"\xff\xd8" + header + bytes(out) + b"\xff\xd9"


def _encapsulated(frames: list[bytes], transfer_syntax: str, rgb_shape: tuple[int, ...], photometric: str,
                  n_frames: int | None = None) -> Dataset:
    ds = _dataset(np.zeros(rgb_shape, np.uint8))
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.PhotometricInterpretation = photometric
    if n_frames:
        ds.NumberOfFrames = n_frames
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.4"
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    return ds


def build(transfer_syntax: str, tmp_path: Path) -> Path:
    """A DICOM file of the sample image in ``transfer_syntax``."""
    path, rgb = tmp_path / "image.dcm", _rgb()
    if transfer_syntax == JPEGBaseline8Bit:
        return _jpeg_dicom(path)
    if transfer_syntax == JPEGExtended12Bit:
        return _jpeg_dicom(path, _sof_to_extended(SAMPLE.read_bytes()))
    if transfer_syntax in (JPEGLossless, JPEGLosslessSV1):
        stream = encode_jpeg_lossless(rgb, 7 if transfer_syntax == JPEGLossless else 1)
        return _save(_encapsulated([stream], transfer_syntax, rgb.shape, "RGB"), path)
    ds = _dataset(rgb, sop_class=VL_PHOTOGRAPHIC_IMAGE_STORAGE, modality="XC")
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    else:
        options = {JPEGLSNearLossless: {"jls_error": 2}, JPEG2000: {"j2k_cr": [20]}}.get(transfer_syntax, {})
        ds.compress(transfer_syntax, **options)
    return _save(ds, path)


LOSSY = {JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000}


# --- decoding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("transfer_syntax", list(ACCEPTED_TRANSFER_SYNTAXES), ids=lambda u: u.name)
def test_every_supported_transfer_syntax_decodes_close_to_the_photo(transfer_syntax, tmp_path):
    path = build(transfer_syntax, tmp_path)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == transfer_syntax
    (item,) = read_input(path)
    assert item.array.shape == MODEL_SHAPE and item.array.dtype == np.uint8
    assert item.frame_index == 0 and item.path == path and item.is_dicom
    assert item.source.transfer_syntax_uid == transfer_syntax
    diff = np.abs(item.array.astype(int) - decode_image(SAMPLE)).mean()
    assert diff < (3.0 if transfer_syntax in LOSSY else 1.0), diff
    if transfer_syntax == JPEGBaseline8Bit:
        assert diff == 0  # fast path: the very same JPEG stream through decode_image


def test_jpeg_lossless_encoder_is_exact(tmp_path):
    """The hand-written lossless streams decode bit-exactly (so the codec path is really lossless)."""
    for syntax in (JPEGLossless, JPEGLosslessSV1):
        ds = pydicom.dcmread(build(syntax, tmp_path))
        assert np.array_equal(ds.pixel_array, _rgb())


def test_full_resolution_jpeg_fast_path_matches_pydicom_colour_conversion(tmp_path):
    """YBR_FULL_422 JPEG: PIL's own YCbCr->RGB equals pydicom's decode + convert_color_space."""
    src = sorted(FULLRES.glob("*.jpg"))[0]
    path = tmp_path / "full.dcm"
    jpeg_to_dicom(src, path)
    (item,) = read_input(path)
    assert np.array_equal(item.array, decode_image(src))
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    ycbcr = pydicom.pixels.pixel_array(ds, raw=True)
    reference = area_resize(convert_color_space(ycbcr, "YBR_FULL", "RGB"))
    assert np.abs(item.array.astype(int) - reference).mean() < 1.0


def test_rgb_header_without_colour_marker_is_decoded_as_the_header_says(tmp_path):
    """PI=RGB and a JPEG stream without JFIF/Adobe marker: no YCbCr->RGB conversion (pydicom path)."""
    jpeg = SAMPLE.read_bytes()
    assert jpeg[2:4] == b"\xff\xe0"  # APP0 (JFIF) right after SOI: drop it
    bare = jpeg[:2] + jpeg[4 + int.from_bytes(jpeg[4:6], "big"):]
    ds = _encapsulated([bare], JPEGBaseline8Bit, (150, 200, 3), "RGB")
    (item,) = read_input(_save(ds, tmp_path / "rgb.dcm"))
    assert np.array_equal(item.array, area_resize(pydicom.dcmread(tmp_path / "rgb.dcm").pixel_array))
    assert np.abs(item.array.astype(int) - decode_image(SAMPLE)).mean() > 10  # raw YCbCr shown as RGB


@pytest.mark.parametrize("encoding", ["jpeg", "native"])
def test_every_frame_of_a_multiframe_image_is_an_item(encoding, tmp_path):
    sources = sorted(SAMPLES.glob("*.jpg"))[:3]
    rgbs = np.stack([_rgb(p) for p in sources])
    if encoding == "jpeg":
        streams = [p.read_bytes() for p in sources]
        ds = _encapsulated(streams, JPEGBaseline8Bit, rgbs.shape[1:], "YBR_FULL_422", 3)
    else:
        ds = _dataset(rgbs, sop_class="1.2.840.10008.5.1.4.1.1.7.4")
    items = read_input(_save(ds, tmp_path / "multi.dcm"))
    assert [i.frame_index for i in items] == [0, 1, 2]
    for item, src in zip(items, sources):
        assert item.source.number_of_frames == 3
        assert np.abs(item.array.astype(int) - decode_image(src)).mean() < 1.0


def test_plain_photos_and_dicom_without_preamble(tmp_path):
    (photo,) = read_input(SAMPLE)
    assert photo.source is None and np.array_equal(photo.array, decode_image(SAMPLE))
    Image.open(SAMPLE).save(tmp_path / "s.png")
    Image.open(SAMPLE).save(tmp_path / "s.tif")
    for p in (tmp_path / "s.png", tmp_path / "s.tif"):
        assert np.abs(read_input(p)[0].array.astype(int) - decode_image(SAMPLE)).mean() < 1.0
    ds = _dataset(_rgb(), sop_class=VL_PHOTOGRAPHIC_IMAGE_STORAGE, modality="XC")
    del ds.file_meta
    raw = tmp_path / "raw.dcm"
    pydicom.dcmwrite(raw, ds, implicit_vr=True, little_endian=True)
    assert raw.read_bytes()[128:132] != b"DICM"
    (item,) = read_input(raw)
    assert item.source.transfer_syntax_uid == ImplicitVRLittleEndian
    assert np.abs(item.array.astype(int) - decode_image(SAMPLE)).mean() < 1.0


# --- refusals ---------------------------------------------------------------------------------------

def _raises(error: type[InputError], path: Path, match: str = "") -> InputError:
    with pytest.raises(error, match=match) as info:
        read_input(path)
    message = str(info.value)
    assert PHI_NAME.split("^")[0] not in message and PHI_ID not in message and path.name not in message
    assert info.value.path == path
    assert isinstance(info.value, ImageDecodeError)  # existing callers catching ImageDecodeError keep working
    return info.value


def test_random_bytes_are_not_dicom_or_image(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _raises(NotDicomOrImageError, path)


def test_missing_file_and_folder(tmp_path):
    _raises(UnreadableFileError, tmp_path / "absent.dcm")
    _raises(UnreadableFileError, tmp_path)


def test_dicom_without_pixel_data(tmp_path):
    ds = _dataset(_rgb())
    del ds.PixelData
    _raises(NoPixelDataError, _save(ds, tmp_path / "nopix.dcm"))


def test_monochrome_image_is_not_a_photograph(tmp_path):
    ct_like = np.random.default_rng(0).integers(0, 4096, (64, 64), dtype=np.uint16)
    ds = _dataset(ct_like, photometric="MONOCHROME2")
    _raises(NotAPhotographError, _save(ds, tmp_path / "mono.dcm"), "MONOCHROME2")
    grey = tmp_path / "grey.png"
    Image.open(SAMPLE).convert("L").save(grey)
    _raises(NotAPhotographError, grey, "greyscale")


@pytest.mark.parametrize(("sop_class", "modality", "match"), [
    ("1.2.840.10008.5.1.4.1.1.2", "CT", "CT .*dangerous"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "SR", "structured report.*not an image"),
    ("1.2.840.10008.5.1.4.1.1.104.1", "DOC", "encapsulated document"),
    (SECONDARY_CAPTURE_IMAGE_STORAGE, "MR", "modality MR: radiology"),
])
def test_radiology_and_non_image_objects_are_refused(sop_class, modality, match, tmp_path):
    ds = _dataset(_rgb(), sop_class=sop_class, modality=modality)
    _raises(NotAPhotographError, _save(ds, tmp_path / "x.dcm"), match)


def test_unsupported_transfer_syntax(tmp_path):
    path = build(ExplicitVRLittleEndian, tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    _raises(UnsupportedTransferSyntaxError, _save(ds, tmp_path / "mpeg.dcm"), MPEG2MPML)


@pytest.mark.parametrize("kind", ["jpeg-dicom", "native-dicom", "plain-jpeg"])
def test_truncated_files(kind, tmp_path):
    source = {"jpeg-dicom": lambda: _jpeg_dicom(tmp_path / "a.dcm"),
              "native-dicom": lambda: build(ExplicitVRLittleEndian, tmp_path),
              "plain-jpeg": lambda: sorted(FULLRES.glob("*.jpg"))[0]}[kind]()
    data = source.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:len(data) // 2])
    _raises(TruncatedFileError, cut)


def test_absurd_dimensions_are_refused_before_decoding(tmp_path):
    ds = _dataset(_rgb()[:4, :4])
    ds.Rows = ds.Columns = 60000
    _raises(ImageTooLargeError, _save(ds, tmp_path / "bomb.dcm"), "pixel limit")
    ds = pydicom.dcmread(_jpeg_dicom(tmp_path / "j.dcm"))
    ds.NumberOfFrames = 4000  # 4000 frames of 200x150 = 120M pixels, from a 9 KB file
    _raises(ImageTooLargeError, _save(ds, tmp_path / "frames.dcm"), "4000 frame")


def test_unreadable_jpeg_frame(tmp_path):
    garbage = b"\xff\xd8\xff\xe0" + np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes()
    ds = _encapsulated([garbage], JPEGBaseline8Bit, (150, 200, 3), "YBR_FULL_422")
    _raises(UnreadableImageError, _save(ds, tmp_path / "bad.dcm"), "JPEG")
    other = sorted(FULLRES.glob("*.jpg"))[0].read_bytes()  # a valid 600x450 stream under a 200x150 header
    ds = _encapsulated([other], JPEGBaseline8Bit, (150, 200, 3), "YBR_FULL_422")
    _raises(UnreadableImageError, _save(ds, tmp_path / "mismatch.dcm"), "does not match")


def test_messages_never_echo_header_values(tmp_path):
    """Header fields may hold anything (here: a patient name); messages show only known values."""
    secret = PHI_NAME.split("^")[0]
    ds = _dataset(_rgb())
    ds.SOPClassUID = secret
    _raises(NotAPhotographError, _save(ds, tmp_path / "sop.dcm"), "malformed UID")
    ds = _dataset(_rgb())
    ds.PhotometricInterpretation = secret
    _raises(UnreadableImageError, _save(ds, tmp_path / "pi.dcm"), "unrecognised")
    ds = _dataset(_rgb())
    ds.file_meta.TransferSyntaxUID = secret
    ds.save_as(tmp_path / "ts.dcm", implicit_vr=False, little_endian=True)
    _raises(UnsupportedTransferSyntaxError, tmp_path / "ts.dcm", "malformed UID")


# --- fuzzing: only documented errors come out ---------------------------------------------------------

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
)


def _mutate(data: bytes, mutations: list[tuple]) -> bytes:
    buf = bytearray(data)
    for kind, where, arg in mutations:
        i = int(where * len(buf))
        if kind == "flip" and buf:
            buf[i] ^= arg
        elif kind == "insert":
            buf[i:i] = arg
        elif kind == "delete":
            del buf[i:i + arg]
        elif kind == "truncate":
            del buf[i:]
    return bytes(buf)


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("fuzz")
    small = tmp / "small.jpg"
    Image.open(SAMPLE).crop((60, 45, 140, 105)).save(small, quality=90)  # 80x60 crop of a real photo
    dicom = _jpeg_dicom(tmp / "small.dcm", small.read_bytes()).read_bytes()
    return {"dicom": dicom, "jpeg": small.read_bytes()}


@pytest.mark.parametrize("seed", ["dicom", "jpeg"])
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_fuzzed_inputs_fail_only_with_documented_errors(seed, mutations, fuzz_seeds, tmp_path):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(_mutate(fuzz_seeds[seed], mutations))
    try:
        items = read_input(path)
    except InputError as exc:
        assert type(exc).__module__ == "skin_plugin.dicom.reader" and str(exc)
        return
    assert items and all(i.array.shape == MODEL_SHAPE and i.array.dtype == np.uint8 for i in items)


# --- records, UIDs, SOP class tables --------------------------------------------------------------

def test_record_holds_report_fields_but_never_shows_phi(tmp_path):
    ds = build_dataset(SAMPLE.read_bytes(), PatientStudy(PHI_NAME, PHI_ID, birth_date="19700101", sex="F",
                                                          age="054Y", accession_number="ACC777"),
                       localization="back")
    (item,) = read_input(_save(ds, tmp_path / "phi.dcm"))
    info = item.source
    assert (info.patient_name, info.patient_id, info.patient_birth_date) == (PHI_NAME, PHI_ID, "19700101")
    assert (info.patient_sex, info.patient_age, info.accession_number) == ("F", "054Y", "ACC777")
    assert (info.rows, info.columns, info.number_of_frames, info.modality) == (150, 200, 1, "DMS")
    region = info.anatomic_region
    assert (region.code_value, region.coding_scheme_designator) == ("66643007", "SCT")
    for text in (repr(info), str(info), repr(item), f"{info}"):
        for secret in (PHI_NAME, "SECRETNAME", PHI_ID, "19700101", "ACC777", "054Y"):
            assert secret not in text
        assert info.sop_instance_uid in text
    assert {"patient_name", "patient_id", "patient_birth_date"} <= set(DicomSourceInfo.phi_fields())


def test_body_part_examined_is_the_fallback_anatomic_region():
    ds = _dataset(_rgb())
    ds.BodyPartExamined = "ARM"
    assert str(DicomSourceInfo.from_dataset(ds).anatomic_region) == "ARM"


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.77.1.7", "0.1", "2.25.0", "1" * 64])
def test_valid_uids(uid):
    assert validated_uid(uid) == uid


@pytest.mark.parametrize("uid", ["", "../x", "1.2/3", "1.2\\3", "1.02", "1..2", ".1", "1.", "1.2 ", "1" * 65,
                                 "1.2.3\x00", "١.٢", None, 12])
def test_invalid_uids_are_rejected(uid):
    with pytest.raises(ValueError):
        validated_uid(uid)


def test_sop_class_families_match_whole_components():
    assert refusal_reason("1.2.840.10008.5.1.4.1.1.20").startswith("nuclear medicine")  # not CT (1.1.2)
    assert refusal_reason("1.2.840.10008.5.1.4.1.1.2.1").startswith("CT")
    assert refusal_reason("1.2.840.10008.5.1.4.1.1.7") is None
    assert "grayscale" in refusal_reason("1.2.840.10008.5.1.4.1.1.7.2")
    assert "not a supported" in refusal_reason("1.2.3.4")


def test_jpeg_colour_markers_are_found_before_the_scan():
    jpeg = SAMPLE.read_bytes()
    assert jpeg_colour_markers(jpeg) == {"jfif"}
    assert jpeg_colour_markers(jpeg[:2] + jpeg[4 + int.from_bytes(jpeg[4:6], "big"):]) == set()
    buf = io.BytesIO()
    Image.new("CMYK", (32, 32)).save(buf, format="JPEG")
    assert "adobe" in jpeg_colour_markers(buf.getvalue())
    assert jpeg_colour_markers(b"\xff\xd8\xff\xe0\x00") == set()  # cut inside a segment header
