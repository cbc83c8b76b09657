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


# SNOMED CT concept ids (all pass the SNOMED check digit, tests/test_constants.py). Evidence, without a
# terminology server here: akiec 201101007 is in pydicom's DICOM code dictionary (CID 4405); bcc 254701007
# and nv 400096001 are in NCBI MedGen / the SNOMED browser on tx.fhir.org; mel 93655004 in HL7 mCODE's
# value set; bkl and vasc are groups, coded by their main member: seborrheic keratosis 394726009 (MedGen,
# OHDSI) and hemangioma 400210000 (pydicom, CIDs 6030/6031); df 427186000 from VisualDx (one source).
# To confirm on a terminology server before clinical deployment: df, and the hierarchy of 400210000.
LESION_CLASSES: tuple[LesionClass, ...] = (
    LesionClass("akiec", "Actinic keratoses and intraepithelial carcinoma (Bowen's disease)",
                "201101007", "Actinic keratosis", True),
    LesionClass("bcc", "Basal cell carcinoma", "254701007", "Basal cell carcinoma of skin", True),
    LesionClass("bkl", "Benign keratosis-like lesions (solar lentigo, seborrheic keratosis, LPLK)",
                "394726009", "Seborrheic keratosis", False),
    LesionClass("df", "Dermatofibroma", "427186000", "Dermatofibroma", False),
    LesionClass("mel", "Melanoma", "93655004", "Malignant melanoma of skin", True),
    LesionClass("nv", "Melanocytic nevi", "400096001", "Melanocytic nevus", False),
    LesionClass("vasc", "Vascular lesions (angiomas, angiokeratomas, pyogenic granulomas, haemorrhage)",
                "400210000", "Hemangioma", False),
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
MODEL_VERSION: str = "1.2.0"
ACTIVATION: str = "silu"
"""LesionCNN's nonlinearity in the shipped model (``skin_plugin.networks.ACTIVATIONS``)."""
LEGACY_ACTIVATION: str = "relu"
"""The nonlinearity of releases and checkpoints that predate the choice (1.0.0)."""
