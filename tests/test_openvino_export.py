"""The shipped IR: FP32 equals PyTorch, INT8 agrees with FP32, files match the manifest."""

import shutil

import numpy as np
import pytest

from skin_plugin.ir_manifest import IR_DIR, IRManifest
from skin_plugin.openvino_classifier import OpenVINOClassifier
from skin_plugin.release import RELEASE_DIR, ModelRelease
from skin_plugin.torch_classifier import TorchClassifier
from training.evaluate import load_evaluation_set


@pytest.fixture(scope="module")
def val_images(ham_dir) -> np.ndarray:
    data = load_evaluation_set(ham_dir / "metadata.csv", ham_dir / "images", RELEASE_DIR / "split.csv", "val")
    return data.images


def test_manifest_describes_the_release():
    ir, release = IRManifest.load(), ModelRelease.load()
    assert ir.version == release.version and ir.data["classes"] == release.manifest["classes"]
    assert ir.data["source_weights_sha256"] == release.manifest["weights"]["sha256"]
    assert ir.calibration == release.calibration
    assert ir.data["input"]["layout"] == "NHWC" and ir.data["input"]["element_type"] == "u8"
    for precision in ("fp32", "int8"):
        ir.verify(precision)
        assert set(ir.data["metrics"][precision]) == {"val", "test"}


def test_tampered_ir_is_refused(tmp_path):
    copy = tmp_path / "ir"
    shutil.copytree(IR_DIR, copy)
    with open(copy / "lesioncnn_int8.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ValueError, match="sha256"):
        OpenVINOClassifier(IRManifest.load(copy), precision="int8")


def test_fp32_ir_matches_pytorch_logits(val_images):
    images = val_images[:64]
    torch_logits = TorchClassifier(ModelRelease.load()).logits(images)
    ov_logits = OpenVINOClassifier(precision="fp32").logits(images)
    assert np.abs(ov_logits - torch_logits).max() <= 1e-4
    assert (ov_logits.argmax(1) == torch_logits.argmax(1)).all()


INT8_AGREEMENT_FLOOR = 0.99
"""The product floor; export's accuracy control aims at 0.992."""


def test_int8_agrees_with_fp32_on_validation(val_images):
    fp32 = OpenVINOClassifier(precision="fp32").predict(val_images)
    int8 = OpenVINOClassifier(precision="int8").predict(val_images)
    agreement = float((fp32.labels == int8.labels).mean())
    assert agreement >= INT8_AGREEMENT_FLOOR, f"INT8/FP32 agreement {agreement:.4f}"


def test_dynamic_batch_sizes_give_the_same_answers(val_images):
    clf = OpenVINOClassifier(precision="fp32")
    full = clf.logits(val_images[:70])
    for n in (1, 5, 33):
        np.testing.assert_allclose(clf.logits(val_images[:n]), full[:n], atol=1e-5)
