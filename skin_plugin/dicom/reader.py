"""Read any input (DICOM file or plain photo) into model-size RGB arrays, one per frame.

``read_input(path)`` returns a list of :class:`InputImage` (uint8, ``(INPUT_HEIGHT, INPUT_WIDTH, 3)``)
or raises one of the :class:`InputError` subclasses below, whose messages name the reason and never
contain patient data (nor the file name: the caller has it as ``error.path``).

DICOM files are recognised by the ``DICM`` prefix at offset 128, or, without a preamble, by a
plausible first data element; plain photos by their JPEG/PNG/TIFF signature. JPEG Baseline frames
take a fast path: the encapsulated JPEG stream goes to :func:`skin_plugin.decode.decode_image`, which
decodes it at a reduced DCT scale with libjpeg-turbo (the stream's JFIF/Adobe markers drive the
YCbCr->RGB conversion).
Everything else is decoded by pydicom's decoders (pylibjpeg, pyjpegls, Pillow, native RLE), turned
into RGB if needed and area-resized. Before any pixel is decoded (or a Deflated data set inflated
beyond its header), the pixel count is checked against ``MAX_IMAGE_PIXELS`` and the decoded size
(rows x columns x samples x bytes x frames) against the byte budget ``SKIN_MAX_DECODED_BYTES``; a
compressed frame must declare the header's size. SOP Instance, Study and Series Instance UIDs must
be valid UIDs (reports are named after them).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    RLELossless,
    UncompressedTransferSyntaxes,
)

from skin_plugin.decode import (
    JPEG_SOI,
    MAX_IMAGE_PIXELS,
    DecodedSizeError,
    ImageDecodeError,
    area_resize,
    check_decoded_size,
    check_photo_size,
    decode_image,
    decode_jpeg_fast,
    open_image,
)
from skin_plugin.dicom.records import MAX_UID_LENGTH, DicomSourceInfo, element_int, validated_uid
from skin_plugin.dicom.sop_classes import (
    ACCEPTED_TRANSFER_SYNTAXES,
    COLOUR_PHOTOMETRICS,
    MONOCHROME_PHOTOMETRICS,
    OTHER_PHOTOMETRICS,
    modality_refusal_reason,
    refusal_reason,
    shown_uid,
)

HEADER_ALLOWANCE = 16 * 1024 * 1024
"""Bytes a file (or an inflated Deflated data set) may hold beyond the decoded-size budget: header,
overlays, private elements."""
INFLATE_STEP = 1 << 20
"""A Deflated data set is inflated this many bytes at a time, only as far as the parser reads."""
PHOTO_FORMATS = ("JPEG", "PNG", "TIFF")
_PHOTO_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class InputError(ImageDecodeError):
    """An input that cannot be scored. The message is specific and free of PHI and file names."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnreadableFileError(InputError):
    """The file cannot be opened or read (missing, a folder, no permission)."""


class EmptyFileError(InputError):
    """A zero-byte file."""


class NotDicomOrImageError(InputError):
    """Neither a DICOM file nor a JPEG/PNG/TIFF photo."""


class NoPixelDataError(InputError):
    """A DICOM object without Pixel Data."""


class NotAPhotographError(InputError):
    """Not a colour photograph: monochrome, radiology SOP class or modality, report, document, ..."""


class UnsupportedTransferSyntaxError(InputError):
    """The pixel data encoding (transfer syntax) is not one the reader decodes."""


class TruncatedFileError(InputError):
    """The file ends before its declared content does."""


class ImageTooLargeError(InputError):
    """Pixel count, decoded size (rows x columns x samples x bytes x frames) or file size over its limit."""


class InvalidUidError(InputError):
    """A SOP Instance, Study or Series Instance UID that is missing or not a valid DICOM UID."""


class UnreadableImageError(InputError):
    """A recognised but corrupt or inconsistent image (bad header values, undecodable pixel data)."""


@dataclass(frozen=True, eq=False)
class InputImage:
    """One model-size frame of an input file."""

    array: np.ndarray = field(repr=False)
    """uint8 RGB, shape (INPUT_HEIGHT, INPUT_WIDTH, 3)."""
    path: Path
    frame_index: int = 0
    source: DicomSourceInfo | None = None
    """The DICOM source record; None for plain photos."""

    @property
    def is_dicom(self) -> bool:
        return self.source is not None


def max_file_bytes() -> int:
    """Files larger than this are refused unread: the decoded-size budget plus the header allowance."""
    from skin_plugin import decode

    return decode.MAX_DECODED_BYTES + HEADER_ALLOWANCE


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of an input file; UnreadableFileError / ImageTooLargeError instead of OSError."""
    path = Path(path)
    try:
        size, limit = path.stat().st_size, max_file_bytes()
        if size > limit:
            raise ImageTooLargeError(f"file of {size} bytes is larger than the {limit} bytes allowed "
                                     f"(decoded-size budget plus {HEADER_ALLOWANCE} bytes)", path)
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnreadableFileError(f"cannot read the file: {reason}", path) from exc


def read_input(path: str | Path, data: bytes | None = None) -> list[InputImage]:
    """Every frame of a DICOM file, or the single image of a photo, at model size.

    ``data`` are the file's bytes if the caller has read them already. Raises an :class:`InputError`
    subclass for anything that cannot be scored.
    """
    path = Path(path)
    if data is None:
        data = read_file_bytes(path)
    if not data:
        raise EmptyFileError("empty file (0 bytes)", path)
    try:
        if is_dicom_preamble(data):
            return read_dicom_bytes(data, path)
        if data.startswith(_PHOTO_SIGNATURES):
            return [InputImage(read_photo_bytes(data), path)]
        if looks_like_dataset(data):
            return read_dicom_bytes(data, path, force=True)
    except InputError as exc:
        exc.path = path
        raise
    raise NotDicomOrImageError("neither a DICOM file nor a JPEG, PNG or TIFF image", path)


def is_dicom_preamble(data: bytes) -> bool:
    """True if ``data`` has the DICOM file prefix ``DICM`` after the 128-byte preamble."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def looks_like_dataset(data: bytes) -> bool:
    """True if ``data`` plausibly starts with a little-endian group 0002/0008 element (no preamble)."""
    if len(data) < 8:
        return False
    group, element = int.from_bytes(data[0:2], "little"), int.from_bytes(data[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x0100:
        return False
    explicit_vr = data[4:6].isalpha() and data[4:6].isupper()
    return explicit_vr or int.from_bytes(data[4:8], "little") < min(len(data), 1 << 16)


def read_photo_bytes(data: bytes) -> np.ndarray:
    """A JPEG/PNG/TIFF photo -> model-size uint8 RGB."""
    if data.startswith(JPEG_SOI):
        try:
            if (fast := decode_jpeg_fast(data)) is not None:
                return fast
        except ImageDecodeError as exc:  # only the size limits are raised here
            raise ImageTooLargeError(str(exc)) from exc
    try:
        image = open_image(BytesIO(data), formats=PHOTO_FORMATS)
        try:
            check_photo_size(image)  # from the header: nothing is decoded yet
        except ImageDecodeError as exc:
            raise ImageTooLargeError(str(exc)) from exc
        if image.mode in _GREY_MODES:
            raise NotAPhotographError(f"greyscale image (mode {image.mode}): not a colour photograph")
        return decode_image(image)
    except InputError:
        raise
    except (DecodedSizeError, Image.DecompressionBombError) as exc:
        raise ImageTooLargeError(f"image too large: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt input; all mean "unreadable"
        raise _photo_error(exc) from exc


def _photo_error(exc: Exception) -> InputError:
    cause = exc.__cause__ if isinstance(exc, ImageDecodeError) and exc.__cause__ else exc
    text = str(cause)
    if "truncated" in text.lower():
        return TruncatedFileError(f"image file is truncated ({text[:120]})")
    return UnreadableImageError(f"unreadable image ({type(cause).__name__}: {text[:160]})")


def read_dicom_bytes(data: bytes, path: Path | None = None, *, force: bool = False) -> list[InputImage]:
    """Every frame of a DICOM file (its bytes) at model size; ``force`` reads a file without preamble."""
    with warnings.catch_warnings(record=True) as caught:  # pydicom warnings may quote element values
        warnings.simplefilter("always")
        try:
            ds = _parse(data, force, caught)
            transfer_syntax = _transfer_syntax(ds)
            info = DicomSourceInfo.from_dataset(ds, transfer_syntax)
            _check_acceptable(ds, transfer_syntax, info, force)
            arrays = _decode_frames(ds, transfer_syntax, info)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: only documented errors leave
            raise UnreadableImageError(f"malformed DICOM file ({type(exc).__name__})") from exc
    return [InputImage(a, path or Path(""), i, info) for i, a in enumerate(arrays)]


def _parse(data: bytes, force: bool, caught: list[warnings.WarningMessage]) -> Dataset:
    meta_end = _meta_end(data)
    if meta_end is not None and len(data) < meta_end:
        raise TruncatedFileError("DICOM file ends inside its file meta information")
    try:
        if (deflated := _deflated_meta(data)) is not None:
            ds = _read_deflated(data, *deflated)
        else:
            ds = dcmread(BytesIO(data), force=force)
    except InputError:
        raise
    except InvalidDicomError as exc:
        raise NotDicomOrImageError("not a valid DICOM file") from exc
    except (EOFError, struct.error) as exc:  # struct.error: fewer bytes left than a value needs
        raise TruncatedFileError("DICOM file ends inside its header") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on malformed files
        raise UnreadableImageError(f"malformed DICOM file ({type(exc).__name__})") from exc
    _check_complete(data, ds, caught, meta_end)
    return ds


def _deflated_meta(data: bytes) -> tuple[Dataset, int] | None:
    """(file meta, where the deflated data set starts) if the file meta says Deflated Explicit VR LE."""
    start = 132 if is_dicom_preamble(data) else 0
    if data[start:start + 2] != b"\x02\x00":
        return None
    fp = BytesIO(data)
    fp.seek(start)
    try:
        meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        uid = str(meta.get("TransferSyntaxUID", "")).strip(" \x00")
    except Exception:  # noqa: BLE001 - a malformed meta group: dcmread names the problem
        return None
    return (meta, fp.tell()) if uid == DeflatedExplicitVRLittleEndian else None


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in (0x7FE00008, 0x7FE00009, 0x7FE00010)


def _read_deflated(data: bytes, meta: Dataset, start: int) -> Dataset:
    """A Deflated Explicit VR Little Endian data set, inflated only as far as it is read.

    The header is parsed first and its decoded size checked against the budget (a few KB inflated);
    then the whole data set, capped at the budget plus the header allowance.
    """
    budget = max_decoded_bytes_now()
    stream = InflatingReader(data[start:], budget + HEADER_ALLOWANCE)
    header = read_dataset(stream, False, True, stop_when=_at_pixel_data)
    _check_decoded_size(header)
    stream.seek(0)
    body = read_dataset(stream, False, True)
    stream.close()  # the inflated copy: the elements hold their own values
    ds = Dataset(body)
    ds.file_meta = FileMetaDataset(meta)
    ds.preamble = data[:128] if is_dicom_preamble(data) else None
    ds.set_original_encoding(False, True, body._character_set)
    return ds


def max_decoded_bytes_now() -> int:
    """The budget this process runs with (``skin_plugin.decode.MAX_DECODED_BYTES``)."""
    from skin_plugin import decode

    return decode.MAX_DECODED_BYTES


class InflatingReader(io.RawIOBase):
    """A seekable file over raw-deflate data that inflates lazily and refuses to grow past ``cap`` bytes."""

    def __init__(self, deflated: bytes, cap: int) -> None:
        super().__init__()
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        self._input = deflated
        self._fed = False
        self._buf = bytearray()
        self._pos = 0
        self.cap = cap

    def _fill(self, upto: int | None) -> None:
        while upto is None or len(self._buf) < upto:
            if self._z.eof:
                return
            source = self._z.unconsumed_tail if self._fed else self._input
            self._fed = True
            try:
                chunk = self._z.decompress(source, min(INFLATE_STEP, self.cap + 1 - len(self._buf)))
            except zlib.error as exc:
                raise UnreadableImageError(f"corrupt deflated data set ({str(exc)[:80]})") from exc
            if not chunk and not source:
                raise TruncatedFileError("the deflated data set ends before its deflate stream does")
            self._buf += chunk
            if len(self._buf) > self.cap:
                raise ImageTooLargeError(f"the deflated data set inflates to more than {self.cap} bytes "
                                         f"(decoded-size budget plus {HEADER_ALLOWANCE} bytes)")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            self._fill(None)
            offset += len(self._buf)
        elif whence == io.SEEK_CUR:
            offset += self._pos
        self._pos = max(0, offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = None if size is None or size < 0 else self._pos + size
        self._fill(end)
        chunk = bytes(self._buf[self._pos:end])
        self._pos += len(chunk)
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self.read(len(buffer))
        buffer[:len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._buf = bytearray()
        super().close()


def _meta_end(data: bytes) -> int | None:
    """Where the file meta information ends according to its group length (None: no preamble)."""
    if not is_dicom_preamble(data):
        return None
    if len(data) < 144:
        return 144
    if data[132:138] == b"\x02\x00\x00\x00UL":  # (0002,0000) File Meta Information Group Length
        return 144 + int.from_bytes(data[140:144], "little")
    return 132


def _check_complete(data: bytes, ds: Dataset, caught: list[warnings.WarningMessage],
                    meta_end: int | None) -> None:
    """Raise TruncatedFileError where pydicom silently stopped at the end of the file."""
    if any(str(w.message).startswith("End of file reached") for w in caught):
        raise TruncatedFileError("DICOM file ends before its pixel data does")
    meta = ds.get("file_meta") or Dataset()
    last_start, last_end = -1, meta_end or 0  # start and end of the last element in the file
    for dataset in (meta, ds):
        for tag in list(dataset.keys()):
            elem = dataset.get_item(tag)
            if not isinstance(elem, RawDataElement):
                start, end = getattr(elem, "file_tell", None) or -1, None  # converted: end unknown
            elif elem.length == 0xFFFFFFFF:
                start, end = elem.value_tell, None
            else:
                if isinstance(elem.value, bytes) and len(elem.value) < elem.length:
                    raise TruncatedFileError(f"DICOM file ends inside element {tag} "
                                             f"({len(elem.value)} of {elem.length} bytes)")
                start, end = elem.value_tell, elem.value_tell + elem.length
            if dataset is ds and start > last_start:
                last_start, last_end = start, end
    deflated = str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian
    if last_end is not None and not deflated and 0 < len(data) - last_end < 8:
        raise TruncatedFileError("DICOM file ends inside an element header")


def _transfer_syntax(ds: Dataset) -> str:
    meta = ds.get("file_meta")
    uid = str(meta.get("TransferSyntaxUID", "") if meta is not None else "").strip(" \x00")
    if uid:
        return uid
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _check_acceptable(ds: Dataset, transfer_syntax: str, info: DicomSourceInfo, force: bool) -> None:
    """Refuse before decoding: wrong kind of object, encoding, colour model or size."""
    if not info.sop_class_uid:
        if force and "PixelData" not in ds:
            raise NotDicomOrImageError("neither a DICOM file nor a JPEG, PNG or TIFF image")
        raise NotAPhotographError("no SOP Class UID: cannot confirm the object is a photograph")
    if reason := refusal_reason(info.sop_class_uid):
        raise NotAPhotographError(reason)
    if reason := modality_refusal_reason(info.modality):
        raise NotAPhotographError(reason)
    _check_uids(info)
    if transfer_syntax not in ACCEPTED_TRANSFER_SYNTAXES:
        raise UnsupportedTransferSyntaxError(
            f"unsupported transfer syntax {shown_uid(transfer_syntax)}; supported: "
            + ", ".join(ACCEPTED_TRANSFER_SYNTAXES.values()))
    if "PixelData" not in ds:
        raise NoPixelDataError("DICOM object has no Pixel Data")
    samples, photometric = element_int(ds, "SamplesPerPixel"), info.photometric_interpretation.upper()
    if photometric in MONOCHROME_PHOTOMETRICS or samples == 1:
        shown = photometric if photometric in MONOCHROME_PHOTOMETRICS else "single-sample"
        raise NotAPhotographError(f"{shown} image: not a colour photograph")
    if samples != 3 or photometric not in COLOUR_PHOTOMETRICS:
        shown = photometric if photometric in OTHER_PHOTOMETRICS | COLOUR_PHOTOMETRICS else "unrecognised"
        raise UnreadableImageError(f"unsupported colour model: {samples} samples per pixel, "
                                   f"photometric interpretation {shown if photometric else 'missing'}")
    rows, columns, frames = info.rows, info.columns, element_int(ds, "NumberOfFrames") or 1
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise UnreadableImageError(f"invalid image size: {rows} rows, {columns} columns, {frames} frames")
    if rows * columns * frames > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(f"{frames} frame(s) of {columns}x{rows} pixels exceed the "
                                 f"{MAX_IMAGE_PIXELS} pixel limit")
    bits = element_int(ds, "BitsAllocated")
    if bits not in (8, 16):
        raise UnreadableImageError(f"unsupported Bits Allocated {bits} for a colour photograph")
    _check_decoded_size(ds)


_UID_ATTRIBUTES = (("SOP Instance UID", "sop_instance_uid"), ("Study Instance UID", "study_instance_uid"),
                   ("Series Instance UID", "series_instance_uid"))


def uid_problem(uid: str) -> str | None:
    """What makes ``uid`` not a DICOM UID (PS3.5 9.1), without quoting it; None if it is one."""
    if not uid:
        return "missing"
    if len(uid) > MAX_UID_LENGTH:
        return f"{len(uid)} characters long, over the {MAX_UID_LENGTH} allowed"
    if uid.strip("0123456789."):
        return "holds characters other than digits and dots"
    try:
        validated_uid(uid)
    except ValueError:
        return "has an empty component or a component with a leading zero"
    return None


def _check_uids(info: DicomSourceInfo) -> None:
    """Reports and SRs are named after and refer to these UIDs: each must be a valid UID."""
    for name, attribute in _UID_ATTRIBUTES:
        if problem := uid_problem(getattr(info, attribute)):
            raise InvalidUidError(f"invalid {name}: {problem}")


def _check_decoded_size(ds: Dataset) -> None:
    """ImageTooLargeError if rows x columns x samples x bytes x frames exceeds the byte budget.

    Values missing from the header are left to the other checks (they refuse such a file).
    """
    rows, columns = element_int(ds, "Rows"), element_int(ds, "Columns")
    samples, bits = element_int(ds, "SamplesPerPixel") or 1, element_int(ds, "BitsAllocated") or 8
    frames = element_int(ds, "NumberOfFrames") or 1
    if not rows or not columns or min(rows, columns, samples, bits, frames) < 0:
        return
    try:
        check_decoded_size(columns, rows, samples, max(1, -(-bits // 8)), frames)
    except DecodedSizeError as exc:
        raise ImageTooLargeError(str(exc)) from exc


def _decode_frames(ds: Dataset, transfer_syntax: str, info: DicomSourceInfo) -> list[np.ndarray]:
    frames = info.number_of_frames
    if transfer_syntax == JPEGBaseline8Bit and element_int(ds, "BitsAllocated") == 8:
        arrays = _decode_jpeg_baseline(ds, info, frames)
        if arrays is not None:
            return arrays
    if transfer_syntax in UncompressedTransferSyntaxes:
        try:
            expected = get_expected_length(ds)
        except Exception as exc:  # noqa: BLE001 - raised on missing/invalid Image Pixel attributes
            raise UnreadableImageError(f"inconsistent pixel description ({type(exc).__name__})") from exc
        if len(ds.PixelData) < expected:
            raise TruncatedFileError(f"pixel data holds {len(ds.PixelData)} of {expected} bytes")
    else:
        _check_frame_streams(ds, transfer_syntax, info, frames)
    try:
        decoder = get_decoder(transfer_syntax)
        # as_rgb=False: YBR is converted strip by strip in _to_model_size (same function, less memory)
        return [_to_model_size(*decoder.as_array(ds, index=i, as_rgb=False)) for i in range(frames)]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types on corrupt streams
        name = ACCEPTED_TRANSFER_SYNTAXES[transfer_syntax]
        raise UnreadableImageError(f"cannot decode the {name} pixel data ({type(exc).__name__}: "
                                   f"{str(exc)[:160]})") from exc


def _check_frame_streams(ds: Dataset, transfer_syntax: str, info: DicomSourceInfo, frames: int) -> None:
    """Before a codec allocates anything: every compressed frame must declare the header's size.

    JPEG / JPEG-LS frame headers and the JPEG 2000 SIZ marker are read; RLE segments are measured
    (a segment may expand 64-fold), so no stream decodes to more than the budget-checked header size.
    """
    try:
        streams = list(generate_frames(ds.PixelData, number_of_frames=frames))[:frames]
    except Exception as exc:  # noqa: BLE001 - malformed item structure
        raise UnreadableImageError(f"malformed encapsulated pixel data ({type(exc).__name__})") from exc
    bits = element_int(ds, "BitsAllocated") or 8
    for stream in streams:
        if transfer_syntax == RLELossless:
            _check_rle_frame(stream, info.rows * info.columns, 3 * max(1, bits // 8))
            continue
        size = _j2k_size(stream) if transfer_syntax in JPEG2000TransferSyntaxes else _jpeg_size(stream)
        if size is not None and (size[0], size[1]) != (info.columns, info.rows):
            name = ACCEPTED_TRANSFER_SYNTAXES.get(transfer_syntax, "compressed")
            raise UnreadableImageError(f"{name} frame of {size[0]}x{size[1]} does not match the header "
                                       f"({info.columns}x{info.rows})")
        if size is not None and size[2] > 4:
            raise UnreadableImageError(f"compressed frame with {size[2]} components (3 expected)")


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
"""Start-of-frame markers of the JPEG processes (T.81) and JPEG-LS (SOF55, T.87)."""


def _jpeg_size(stream: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG / JPEG-LS frame header; None if it has none before SOS."""
    pos = 2 if stream[:2] == b"\xff\xd8" else None
    while pos is not None and pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(stream[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF and pos + 10 <= len(stream):
            height = int.from_bytes(stream[pos + 5:pos + 7], "big")
            width = int.from_bytes(stream[pos + 7:pos + 9], "big")
            return width, height, stream[pos + 9]
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def _j2k_size(stream: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the SIZ marker of a JPEG 2000 codestream (bare or in a JP2 box)."""
    pos = stream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if pos < 0 or pos + 42 > len(stream):
        return None
    x, y, x0, y0 = struct.unpack(">IIII", stream[pos + 8:pos + 24])
    return x - x0, y - y0, int.from_bytes(stream[pos + 40:pos + 42], "big")


def _check_rle_frame(stream: bytes, pixels: int, segments_expected: int) -> None:
    """Every RLE segment decodes to at most ``pixels`` bytes (measured without decoding)."""
    if len(stream) < 64:
        raise UnreadableImageError("RLE frame shorter than its 64-byte header")
    header = struct.unpack("<16I", stream[:64])
    count = header[0]
    if not 1 <= count <= 15 or count != segments_expected:
        raise UnreadableImageError(f"RLE frame with {count} segments ({segments_expected} expected)")
    offsets = [*header[1:count + 1], len(stream)]
    for start, end in zip(offsets, offsets[1:]):
        if not 64 <= start <= end <= len(stream):
            raise UnreadableImageError("RLE segment offsets out of order or past the frame")
        if _rle_segment_length(stream, start, end, pixels + 1) > pixels + 1:
            raise UnreadableImageError(f"RLE segment decodes to more than the header's {pixels} bytes")


def _rle_segment_length(data: bytes, pos: int, end: int, limit: int) -> int:
    """Bytes a PackBits segment decodes to, counting no further than just past ``limit``."""
    total = 0
    while pos < end and total <= limit:
        n = data[pos]
        if n < 128:
            total += min(n + 1, end - pos - 1)  # a literal run cut short by the segment's end
            pos += n + 2
        else:
            total += 0 if n == 128 else 257 - n
            pos += 1 if n == 128 else 2
    return total


def _decode_jpeg_baseline(ds: Dataset, info: DicomSourceInfo, frames: int) -> list[np.ndarray] | None:
    """Fast path: each encapsulated JPEG stream decoded at a reduced DCT scale (libjpeg-turbo, or PIL
    for streams it does not take).

    None when the streams carry no colour-space marker but the header says RGB (libjpeg would wrongly
    convert from YCbCr): then pydicom's decoder, which honours the header, is used instead.
    """
    try:
        streams = list(generate_frames(ds.PixelData, number_of_frames=frames))[:frames]
    except Exception as exc:  # noqa: BLE001 - malformed item structure
        raise UnreadableImageError(f"malformed encapsulated pixel data ({type(exc).__name__})") from exc
    if len(streams) < frames:
        raise TruncatedFileError(f"encapsulated pixel data holds {len(streams)} of {frames} frames")
    header_rgb = info.photometric_interpretation.upper() == "RGB"
    arrays = []
    for stream in streams:
        stream = bytes(stream)
        width, height, colours = _jpeg_frame_header(stream)
        if (width, height) != (info.columns, info.rows) or colours != 3:
            raise UnreadableImageError(f"JPEG frame of {width}x{height} with {colours} colour component(s) "
                                       f"does not match the header ({info.columns}x{info.rows}, 3 samples)")
        if header_rgb and not jpeg_colour_markers(stream):
            return None
        try:
            arrays.append(decode_image(stream))
        except ImageDecodeError as exc:
            raise _photo_error(exc) from exc
    return arrays


def _jpeg_frame_header(stream: bytes) -> tuple[int, int, int]:
    """(width, height, components) of a JPEG stream; UnreadableImageError if it has no frame header."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(stream)
        return width, height, 1 if colorspace == "Gray" else 4 if colorspace in ("CMYK", "YCCK") else 3
    except ValueError:
        pass  # e.g. a subsampling libjpeg-turbo's header API does not name: ask PIL
    try:
        image = Image.open(BytesIO(stream), formats=("JPEG",))
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt streams
        raise UnreadableImageError(f"unreadable JPEG frame ({type(exc).__name__})") from exc
    return image.size[0], image.size[1], len(image.getbands())


def jpeg_colour_markers(stream: bytes) -> set[str]:
    """Which of the JFIF (APP0) and Adobe (APP14) segments, that fix a JPEG's colour space, it has."""
    found, pos = set(), 2
    while pos + 4 <= len(stream) and stream[pos] == 0xFF:
        marker, length = stream[pos + 1], int.from_bytes(stream[pos + 2:pos + 4], "big")
        if marker == 0xDA or length < 2:  # start of scan: no more header segments
            break
        if marker == 0xE0 and stream[pos + 4:pos + 9] == b"JFIF\x00":
            found.add("jfif")
        elif marker == 0xEE and stream[pos + 4:pos + 9] == b"Adobe":
            found.add("adobe")
        pos += 2 + length
    return found


STRIP_ROWS = 256
"""Rows converted (YBR to RGB, 16 to 8 bits) at a time: pydicom's colour conversion works in floating
point, so converting a whole frame at once would take several times its size."""


def _to_model_size(array: np.ndarray, meta: dict) -> np.ndarray:
    """A decoded (rows, columns, 3) frame -> uint8 RGB at model size (converted strip by strip)."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise UnreadableImageError(f"decoded frame has shape {array.shape}, expected (rows, columns, 3)")
    ybr = meta.get("photometric_interpretation") in ("YBR_FULL", "YBR_FULL_422")
    if ybr or array.dtype != np.uint8:
        shift = max(0, int(meta.get("bits_stored", 8)) - 8)
        rgb = np.empty(array.shape, np.uint8)
        for start in range(0, array.shape[0], STRIP_ROWS):
            strip = array[start:start + STRIP_ROWS]
            if ybr:
                strip = convert_color_space(strip, "YBR_FULL", "RGB")
            if strip.dtype != np.uint8:
                strip = np.clip(strip >> shift, 0, 255)
            rgb[start:start + STRIP_ROWS] = strip
        array = rgb
    return area_resize(np.ascontiguousarray(array))
