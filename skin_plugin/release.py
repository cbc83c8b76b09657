"""The shipped model release: weights, calibration and identity described by one ``model.json``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from skin_plugin.calibration import Calibration
from skin_plugin.constants import CLASS_CODES, LEGACY_ACTIVATION

RELEASE_DIR = Path(__file__).resolve().parent / "release"
MANIFEST_NAME = "model.json"
WEIGHTS_NAME = "lesioncnn.pt"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: Path | str, file_name: str, what: str) -> tuple[Path, dict]:
    """Read a model manifest given its folder or file; check it lists this product's classes."""
    path = Path(path)
    manifest_path = path if path.suffix == ".json" else path / file_name
    if not manifest_path.exists():
        raise FileNotFoundError(f"no {what} at {manifest_path}")
    data = json.loads(manifest_path.read_text())
    if tuple(data["classes"]) != CLASS_CODES:
        raise ValueError(f"{manifest_path}: classes {data['classes']} differ from {list(CLASS_CODES)}")
    return manifest_path, data


def fitted_splits(training: dict) -> tuple[str, ...]:
    """Splits a training config's weights were fitted on: ("train",), or ("train", "val") for a refit
    (``skin-plugin train --fit-on train+val``); configs older than the field trained on "train"."""
    return tuple(str(training.get("fit_on", "train")).split("+"))


@dataclass(frozen=True)
class ModelRelease:
    directory: Path
    manifest: dict

    @classmethod
    def load(cls, path: Path | str = RELEASE_DIR) -> ModelRelease:
        """Load a release from its directory or its ``model.json``."""
        manifest_path, manifest = read_manifest(path, MANIFEST_NAME, "model manifest")
        return cls(manifest_path.parent, manifest)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def weights_path(self) -> Path:
        return self.directory / self.manifest["weights"]["file"]

    @property
    def activation(self) -> str:
        """LesionCNN's nonlinearity (releases older than the field used ReLU)."""
        return str(self.manifest.get("activation", LEGACY_ACTIVATION))

    @property
    def network(self) -> str:
        """The network's name (``skin_plugin.networks.network_names``); older releases are LesionCNN."""
        return str(self.manifest.get("training", {}).get("network", "lesioncnn"))

    @property
    def fitted_splits(self) -> tuple[str, ...]:
        """Splits the weights were trained on (``fitted_splits``)."""
        return fitted_splits(self.manifest.get("training", {}))

    @property
    def held_out_splits(self) -> tuple[str, ...]:
        """Labelled splits the weights never saw, on which the release is scored."""
        return tuple(s for s in ("val", "test") if s not in self.fitted_splits)

    @property
    def calibration(self) -> Calibration:
        return Calibration.from_dict(self.manifest["calibration"])

    def verify(self) -> None:
        """Raise if the weights file does not match the sha256 recorded in the manifest."""
        expected = self.manifest["weights"]["sha256"]
        actual = sha256_file(self.weights_path)
        if actual != expected:
            raise ValueError(f"{self.weights_path}: sha256 {actual} does not match manifest {expected}")
