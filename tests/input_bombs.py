"""Hostile inputs built at test time: tiny files that decode to huge images, and DICOMs with bad UIDs.

Every builder streams its output, so building a bomb costs a few MB of memory, never the decoded size.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import dcmwrite, write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from skin_plugin.dicom.sop_classes import MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE, SECONDARY_CAPTURE_IMAGE_STORAGE

CHUNK = 1 << 20


def _header(rows: int, columns: int, bits: int, frames: int = 1, **uids: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = uids.get("sop", generate_uid())
    ds.StudyInstanceUID = uids.get("study", generate_uid())
    ds.SeriesInstanceUID = uids.get("series", generate_uid())
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName, ds.PatientID = "BOMB^TEST", "BOMB-1"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def deflated_dicom(path: Path, rows: int = 10_000, columns: int = 10_000, bits: int = 16) -> Path:
    """A Deflated Explicit VR Little Endian RGB DICOM of black pixels (16-bit 10000x10000: ~584 KB)."""
    ds = _header(rows, columns, bits)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = BytesIO()
    dcmwrite(head, ds, enforce_file_format=True)  # preamble + meta + (deflated) header elements
    meta_end = 132 + 12 + int.from_bytes(head.getvalue()[140:144], "little")
    body = BytesIO()
    body_ds = Dataset(ds)  # the elements without the file meta
    fp = DicomFileLike(body)
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, body_ds)
    nbytes = rows * columns * 3 * (bits // 8)
    vr = b"OW" if bits == 16 else b"OB"
    pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr, 0, nbytes)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as f:
        f.write(head.getvalue()[:meta_end])
        f.write(z.compress(body.getvalue() + pixel_header))
        zeros = bytes(CHUNK)
        for _ in range(nbytes // CHUNK):
            f.write(z.compress(zeros))
        f.write(z.compress(bytes(nbytes % CHUNK)))
        f.write(z.flush())
    return path


def black_png(path: Path, width: int = 10_000, height: int = 10_000) -> Path:
    """A black RGB PNG (10000x10000: ~290 KB), written row by row through zlib."""
    raw_row = b"\x00" + bytes(3 * width)  # filter byte 0 + black pixels
    z = zlib.compressobj(9)
    idat = bytearray()
    for _ in range(height):
        idat += z.compress(raw_row)
    idat += z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bytes(idat))
                     + chunk(b"IEND", b""))
    return path


def small_dicom(path: Path, frames: int = 1, shade: int = 0, **uids: str) -> Path:
    """A 64x48 uncompressed RGB Secondary Capture (multi-frame Secondary Capture with ``frames``);
    ``sop``/``study``/``series`` override its UIDs as given; ``shade`` changes its pixels."""
    ds = _header(48, 64, 8, frames, **uids)
    if frames > 1:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    image = Image.radial_gradient("L").resize((64, 48)).point(lambda v: (v + shade) % 256).convert("RGB")
    ds.PixelData = image.tobytes() * frames
    dcmwrite(path, ds, enforce_file_format=True)
    return path
