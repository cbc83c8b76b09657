"""DICOM and photo input: read any input into model-size arrays, wrap JPEG photos as DICOM.

``skin_plugin.dicom.reader`` needs pydicom (+ pylibjpeg/pyjpegls for compressed syntaxes); import the
submodules directly so that the serving path only pays for what it uses.
"""

from skin_plugin.dicom.reader import (
    EmptyFileError,
    ImageTooLargeError,
    InputError,
    InputImage,
    InvalidUidError,
    NoPixelDataError,
    NotAPhotographError,
    NotDicomOrImageError,
    TruncatedFileError,
    UnreadableFileError,
    UnreadableImageError,
    UnsupportedTransferSyntaxError,
    read_input,
)
from skin_plugin.dicom.records import AnatomicRegion, DicomSourceInfo, validated_uid

__all__ = [
    "AnatomicRegion",
    "DicomSourceInfo",
    "EmptyFileError",
    "ImageTooLargeError",
    "InputError",
    "InputImage",
    "InvalidUidError",
    "NoPixelDataError",
    "NotAPhotographError",
    "NotDicomOrImageError",
    "TruncatedFileError",
    "UnreadableFileError",
    "UnreadableImageError",
    "UnsupportedTransferSyntaxError",
    "read_input",
    "validated_uid",
]
