"""Skin-lesion batch scoring: LesionCNN on HAM10000 classes, OpenVINO serving, DICOM in and out.

Importing this package turns off the usage telemetry of OpenVINO's model converter and of NNCF for the
process. Both import ``openvino_telemetry`` (installed with ``openvino``) and, without a consent file in
the user's home, send an event per call from a newly spawned Python process: a clinical product must
not try to reach the internet, and each of those processes re-imports the caller's main module, which
stole enough CPU to stall benchmarks. With the module marked missing, both fall back to their no-op
telemetry. The OpenVINO runtime (``Core``) sends none.
"""

import sys

sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
