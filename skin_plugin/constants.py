"""Single source of truth for the lesion classes, preprocessing constants and model identity.

Training, evaluation, export and every inference path import these values from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LesionClass:
    """One HAM10000 diagnostic category."""

    code: str
    """Short HAM10000 ``dx`` code, e.g. ``"mel"``."""
    name: str
    """Full name as given by the dataset authors."""
    snomed_code: str
    """SNOMED CT concept id of the diagnosis."""
    snomed_meaning: str
    """SNOMED CT fully specified name (without the semantic tag)."""
    malignant: bool


# SNOMED CT: akiec, bcc, mel and nv were confirmed against DICOM CID 4405 and FHIR-checked code lists;
# bkl (no single concept exists), df and vasc are provisional until checked on a terminology server.
LESION_CLASSES: tuple[LesionClass, ...] = (
    LesionClass("akiec", "Actinic keratoses and intraepithelial carcinoma (Bowen's disease)",
                "201101007", "Actinic keratosis", True),
    LesionClass("bcc", "Basal cell carcinoma", "254701007", "Basal cell carcinoma of skin", True),
    LesionClass("bkl", "Benign keratosis-like lesions (solar lentigo, seborrheic keratosis, LPLK)",
                "402257005", "Benign keratosis of skin", False),
    LesionClass("df", "Dermatofibroma", "200619007", "Dermatofibroma", False),
    LesionClass("mel", "Melanoma", "93655004", "Malignant melanoma of skin", True),
    LesionClass("nv", "Melanocytic nevi", "400010006", "Melanocytic nevus of skin", False),
    LesionClass("vasc", "Vascular lesions (angiomas, angiokeratomas, pyogenic granulomas, haemorrhage)",
                "238772004", "Vascular lesion of skin", False),
)
CLASS_CODES: tuple[str, ...] = tuple(c.code for c in LESION_CLASSES)
NUM_CLASSES: int = len(LESION_CLASSES)
MELANOMA_INDEX: int = CLASS_CODES.index("mel")

# --- Preprocessing -----------------------------------------------------------------------
INPUT_HEIGHT: int = 120
"""Model input height in pixels (4:3 like the 600x450 HAM10000 frames)."""
INPUT_WIDTH: int = 160
INPUT_CHANNELS: int = 3
RESIZE_MODE: str = "area"
"""Interpolation used to bring any photo to the model size (area averaging = anti-aliased)."""
CHANNEL_MEAN: tuple[float, float, float] = (0.7618, 0.5451, 0.5697)
"""Per-channel RGB mean of the training split at model size, on a 0..1 scale."""
CHANNEL_STD: tuple[float, float, float] = (0.1403, 0.1516, 0.1680)
"""Per-channel RGB standard deviation of the training split, on a 0..1 scale."""

# --- Model identity ----------------------------------------------------------------------
MODEL_NAME: str = "LesionCNN"
MODEL_VERSION: str = "1.0.0"
