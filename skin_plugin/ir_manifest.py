"""The OpenVINO IR manifest: the single description of the deployed model that a worker loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skin_plugin.calibration import Calibration
from skin_plugin.release import read_manifest, sha256_file

IR_DIR = Path(__file__).resolve().parents[1] / "openvino_ir" / "lesioncnn"
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "int8")
DEFAULT_PRECISION = "int8"
"""The accuracy-controlled INT8 IR (its decisions agree with FP32 on >= 99% of validation images)."""


@dataclass(frozen=True)
class IRManifest:
    directory: Path
    data: dict

    @classmethod
    def load(cls, path: Path | str = IR_DIR) -> IRManifest:
        manifest_path, data = read_manifest(path, MANIFEST_NAME, "OpenVINO IR manifest")
        return cls(manifest_path.parent, data)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_dict(self.data["calibration"])

    def weights_sha256(self, precision: str) -> str:
        """sha256 of the ``.bin`` of ``precision`` (the model hash written into every report)."""
        files = self.data["precisions"][precision]
        return files["sha256"][files["bin"]]

    def xml_path(self, precision: str) -> Path:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        return self.directory / self.data["precisions"][precision]["xml"]

    def verify(self, precision: str) -> None:
        """Raise if an IR file of ``precision`` does not match its recorded sha256."""
        for name, expected in self.data["precisions"][precision]["sha256"].items():
            actual = sha256_file(self.directory / name)
            if actual != expected:
                raise ValueError(f"{self.directory / name}: sha256 {actual} != manifest {expected}")
