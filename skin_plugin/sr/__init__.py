"""Per-image DICOM Comprehensive SR (TID 1500) reports of skin-lesion classification results.

:func:`build_reference_sr` builds the report with highdicom (the reference, ~50 ms);
:class:`SRTemplate` renders the same file, byte for byte, from a pre-encoded template (~0.15 ms).
"""

from skin_plugin.sr.reference import SRSourceError, build_reference_sr, source_dataset
from skin_plugin.sr.template import SRTemplate

__all__ = ["SRSourceError", "SRTemplate", "build_reference_sr", "source_dataset"]
