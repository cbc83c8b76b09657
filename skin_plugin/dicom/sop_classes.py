"""DICOM tables as data: which SOP classes, transfer syntaxes and modalities the reader accepts.

Everything not accepted here is refused with a human reason (see ``refusal_reason``). UIDs are from
PS3.6 Annex A; the families below match a UID and every UID under it, component by component.
"""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from skin_plugin.dicom.records import validated_uid

DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7.4"

ACCEPTED_SOP_CLASSES: dict[str, str] = {
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE: "Dermoscopic Photography Image Storage",
    VL_PHOTOGRAPHIC_IMAGE_STORAGE: "VL Photographic Image Storage",
    SECONDARY_CAPTURE_IMAGE_STORAGE: "Secondary Capture Image Storage",
    MULTIFRAME_TRUE_COLOR_SC_IMAGE_STORAGE: "Multi-frame True Color Secondary Capture Image Storage",
}
"""SOP Class UID -> name, for the colour photographs a skin-lesion result may be attached to."""

RADIOLOGY = "radiology/non-photographic image: a skin-lesion result on it would be dangerous"
NOT_AN_IMAGE = "not an image"
OTHER_PHOTO = ("photograph of another kind (endoscopy, microscopy, ophthalmology): "
               "the model was not trained on it")

_S = "1.2.840.10008.5.1.4.1.1."  # storage SOP class root
REFUSED_SOP_CLASS_FAMILIES: tuple[tuple[str, str, str], ...] = (
    (_S + "1", "CR/DX/MG/IO radiography", RADIOLOGY),
    (_S + "2", "CT", RADIOLOGY),
    (_S + "3", "ultrasound multi-frame (retired)", RADIOLOGY),
    (_S + "3.1", "ultrasound multi-frame", RADIOLOGY),
    (_S + "4", "MR", RADIOLOGY),
    (_S + "5", "nuclear medicine (retired)", RADIOLOGY),
    (_S + "6", "ultrasound", RADIOLOGY),
    (_S + "7.1", "single-bit secondary capture", "monochrome bitmap, not a colour photograph"),
    (_S + "7.2", "grayscale secondary capture", "monochrome, not a colour photograph"),
    (_S + "7.3", "grayscale secondary capture", "monochrome, not a colour photograph"),
    (_S + "9", "waveform", NOT_AN_IMAGE),
    (_S + "11", "presentation state", NOT_AN_IMAGE),
    (_S + "12", "X-ray angiography/fluoroscopy", RADIOLOGY),
    (_S + "13", "X-ray 3D/tomosynthesis/breast CT", RADIOLOGY),
    (_S + "14", "intravascular OCT", RADIOLOGY),
    (_S + "20", "nuclear medicine", RADIOLOGY),
    (_S + "30", "parametric map", RADIOLOGY),
    (_S + "66", "raw data/registration/fiducials/segmentation", NOT_AN_IMAGE),
    (_S + "67", "real world value mapping", NOT_AN_IMAGE),
    (_S + "68", "surface segmentation/scan", NOT_AN_IMAGE),
    (_S + "77.1.1", "VL endoscopic", OTHER_PHOTO),
    (_S + "77.1.2", "VL microscopic", OTHER_PHOTO),
    (_S + "77.1.3", "VL slide-coordinates microscopic", OTHER_PHOTO),
    (_S + "77.1.4.1", "video photographic", "video, not a still photograph"),
    (_S + "77.1.5", "ophthalmic photography/tomography", OTHER_PHOTO),
    (_S + "77.1.6", "whole slide microscopy", OTHER_PHOTO),
    (_S + "77.1.8", "confocal microscopy", OTHER_PHOTO),
    (_S + "77.1.9", "confocal microscopy tiled pyramidal", OTHER_PHOTO),
    (_S + "78", "ophthalmic measurements", NOT_AN_IMAGE),
    (_S + "79", "ophthalmic measurements", NOT_AN_IMAGE),
    (_S + "80", "ophthalmic visual field", NOT_AN_IMAGE),
    (_S + "81", "ophthalmic thickness map", OTHER_PHOTO),
    (_S + "82", "corneal topography map", OTHER_PHOTO),
    (_S + "88", "structured report", NOT_AN_IMAGE),
    (_S + "90", "content assessment", NOT_AN_IMAGE),
    (_S + "91", "annotations", NOT_AN_IMAGE),
    (_S + "104", "encapsulated document (PDF, CDA, STL, OBJ, MTL)", NOT_AN_IMAGE),
    (_S + "128", "PET", RADIOLOGY),
    (_S + "130", "enhanced PET", RADIOLOGY),
    (_S + "131", "basic structured display", NOT_AN_IMAGE),
    (_S + "200", "CT/XA defined procedure protocol", NOT_AN_IMAGE),
    (_S + "481", "radiotherapy object (RT image, dose, plan, structure set, ...)", RADIOLOGY),
    (_S + "501", "DICOS security screening", NOT_AN_IMAGE),
    (_S + "601", "eddy current (DICONDE)", NOT_AN_IMAGE),
    ("1.2.840.10008.1.3.10", "DICOMDIR media storage directory", NOT_AN_IMAGE),
)
"""(UID family root, what it is, why refused). The most specific matching root wins."""

ACCEPTED_TRANSFER_SYNTAXES: dict[str, str] = {
    ImplicitVRLittleEndian: "Implicit VR Little Endian",
    ExplicitVRLittleEndian: "Explicit VR Little Endian",
    DeflatedExplicitVRLittleEndian: "Deflated Explicit VR Little Endian",
    JPEGBaseline8Bit: "JPEG Baseline (Process 1)",
    JPEGExtended12Bit: "JPEG Extended (Process 2 & 4)",
    JPEGLossless: "JPEG Lossless, Non-Hierarchical (Process 14)",
    JPEGLosslessSV1: "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
    JPEGLSLossless: "JPEG-LS Lossless",
    JPEGLSNearLossless: "JPEG-LS Near-Lossless",
    JPEG2000Lossless: "JPEG 2000 (Lossless Only)",
    JPEG2000: "JPEG 2000",
    RLELossless: "RLE Lossless",
}
"""Transfer Syntax UID -> name. Anything else (big endian, MPEG, HEVC, HTJ2K, private) is refused."""

REFUSED_MODALITIES: dict[str, str] = {
    **dict.fromkeys(("CT", "MR", "US", "CR", "DX", "MG", "IO", "PX", "RF", "XA", "RG", "DG", "BMD", "NM",
                     "PT", "RTIMAGE", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "IVOCT", "IVUS", "TG",
                     "BI"), RADIOLOGY),
    **dict.fromkeys(("SR", "KO", "PR", "SEG", "REG", "FID", "RWV", "ECG", "EEG", "EMG", "HD", "AU", "PLAN",
                     "ANN", "DOC"), NOT_AN_IMAGE),
    **dict.fromkeys(("ES", "GM", "SM", "OP", "OPT", "OPV", "OCT", "CFM"), OTHER_PHOTO),
}
"""Modality (0008,0060) values refused even inside an accepted SOP class (e.g. a CT screenshot in SC)."""

MONOCHROME_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})
COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
OTHER_PHOTOMETRICS = frozenset({"YBR_PARTIAL_420", "YBR_PARTIAL_422", "HSV", "ARGB", "CMYK", "XYB"})
"""Defined (mostly retired) terms the reader does not decode; any other value is shown as unrecognised."""


def shown_uid(uid: str) -> str:
    """``uid`` for a message if it is a well-formed UID, else a placeholder (the value may be anything)."""
    try:
        return validated_uid(uid)
    except ValueError:
        return "(malformed UID)"


def _in_family(uid: str, root: str) -> bool:
    return uid == root or uid.startswith(root + ".")


def sop_class_name(uid: str) -> str:
    """Human name of an accepted or refused SOP class, else the UID itself."""
    if uid in ACCEPTED_SOP_CLASSES:
        return ACCEPTED_SOP_CLASSES[uid]
    family = _refused_family(uid)
    return family[1] if family else uid


def _refused_family(uid: str) -> tuple[str, str, str] | None:
    matches = [f for f in REFUSED_SOP_CLASS_FAMILIES if _in_family(uid, f[0])]
    return max(matches, key=lambda f: len(f[0])) if matches else None


def refusal_reason(sop_class_uid: str) -> str | None:
    """None if the SOP class is accepted, else why it is refused."""
    if sop_class_uid in ACCEPTED_SOP_CLASSES:
        return None
    family = _refused_family(sop_class_uid)
    if family:
        return f"{family[1]} ({shown_uid(sop_class_uid)}): {family[2]}"
    return f"SOP class {shown_uid(sop_class_uid)} is not a supported colour photograph class"


def modality_refusal_reason(modality: str) -> str | None:
    """None if the Modality (0008,0060) value may carry a skin photograph, else why not."""
    reason = REFUSED_MODALITIES.get(modality.strip().upper())
    return f"modality {modality.strip().upper()}: {reason}" if reason else None


def is_accepted_transfer_syntax(uid: str) -> bool:
    return uid in ACCEPTED_TRANSFER_SYNTAXES
