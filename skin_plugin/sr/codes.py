"""The coded concepts of the classification SR, in one place.

Every DICOM (DCM), SNOMED CT (SCT) and UCUM code below is taken from pydicom's copy of the DICOM code
tables (PS3.16, ``pydicom.sr.codedict``) rather than typed in, so a wrong value cannot creep in; the
diagnosis codes come from the class table in :mod:`skin_plugin.constants` (the single source of truth
for the classes).
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from skin_plugin.constants import LESION_CLASSES

DOCUMENT_TITLE = codes.DCM.ImagingMeasurementReport
"""(126000, DCM) Imaging Measurement Report: the TID 1500 title (CID 7021)."""
PROCEDURE_REPORTED = codes.SCT.DermoscopicPhotography
"""(446078004, SCT) Dermoscopic photography (procedure)."""
FINDING = codes.DCM.Finding
"""(121071, DCM) Finding: concept name of the diagnosis (a qualitative evaluation)."""
PROBABILITY = codes.DCM.Probability
"""(122157, DCM) Probability: measurement method of the per-class values."""
NO_UNITS = codes.UCUM.NoUnits
"""(1, UCUM) no units: unit of a probability (0..1)."""
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence
"""(123110, DCM) Artificial Intelligence (CID 7162, the Algorithm Family of TID 4019)."""
COMMENT = codes.DCM.Comment
"""(121106, DCM) Comment: the not-for-clinical-use statement."""
DEVICE = codes.DCM.Device
"""(121007, DCM) Device: observer type of the model."""
TRACKING_IDENTIFIER = codes.DCM.TrackingIdentifier
TRACKING_UNIQUE_IDENTIFIER = codes.DCM.TrackingUniqueIdentifier
SOURCE_OF_MEASUREMENT = codes.DCM.SourceOfMeasurement
"""(121112, DCM) Source of Measurement: the IMAGE item referencing the scored image."""
FINDING_SITE = codes.SCT.FindingSite
MEASUREMENT_METHOD = codes.SCT.MeasurementMethod
ALGORITHM_NAME = codes.DCM.AlgorithmName
ALGORITHM_VERSION = codes.DCM.AlgorithmVersion
ALGORITHM_PARAMETERS = codes.DCM.AlgorithmParameters
MALIGNANT = codes.SCT.Malignant
"""(21594007, SCT, Malignant): concept name of the malignancy score, a measurement with method Probability
like the per-class values (the calibrated probability of a malignant class, see ``skin_plugin.review``)."""
REVIEW_FLAG = codes.DCM.ForPhysicianReview
"""(128201, DCM, For Physician Review): concept name of the review flag, a qualitative evaluation whose
value is ``YES`` or ``NO``."""
YES = codes.SCT.Yes
"""(373066001, SCT, Yes), CID 230 Yes-No: the image is flagged for review."""
NO = codes.SCT.No
"""(373067005, SCT, No), CID 230 Yes-No: it is not."""

STANDARD_CODES: tuple[Code, ...] = (
    DOCUMENT_TITLE, PROCEDURE_REPORTED, FINDING, PROBABILITY, NO_UNITS, ALGORITHM_FAMILY, COMMENT, DEVICE,
    TRACKING_IDENTIFIER, TRACKING_UNIQUE_IDENTIFIER, SOURCE_OF_MEASUREMENT, FINDING_SITE, MEASUREMENT_METHOD,
    ALGORITHM_NAME, ALGORITHM_VERSION, ALGORITHM_PARAMETERS, MALIGNANT, REVIEW_FLAG, YES, NO,
)
"""Every non-diagnosis code the SR uses (checked by the tests against the DICOM tables)."""

NOT_FOR_CLINICAL_USE = ("Not for clinical use. Research software: this automated classification must be "
                        "reviewed by a qualified clinician.")
"""Text of the Comment item of every report."""

_DIAGNOSES: dict[str, Code] = {
    c.code: Code(c.snomed_code, "SCT", c.snomed_meaning) for c in LESION_CLASSES
}


def diagnosis_code(class_code: str) -> Code:
    """The SNOMED CT code of a HAM10000 class (``"mel"`` -> (93655004, SCT, Malignant melanoma of skin))."""
    try:
        return _DIAGNOSES[class_code]
    except KeyError:
        known = ", ".join(_DIAGNOSES)
        raise ValueError(f"unknown lesion class {class_code!r}; expected one of {known}") from None
