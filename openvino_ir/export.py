"""Export the release to OpenVINO IR: FP32 and NNCF INT8, with normalisation and layout in the IR.

The IR input is a uint8 NHWC batch at model size (dynamic batch); the IR itself converts to float,
subtracts ``255 * mean`` and divides by ``255 * std`` per channel and transposes to NCHW, so the
serving path needs neither torch nor MONAI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from skin_plugin.calibration import Calibration
from skin_plugin.constants import CHANNEL_MEAN, CHANNEL_STD, INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH
from skin_plugin.ir_manifest import IR_DIR, MANIFEST_NAME, PRECISIONS, IRManifest
from skin_plugin.openvino_classifier import FP32_CPU_CONFIG
from skin_plugin.release import ModelRelease, sha256_file

CALIBRATION_IMAGES = 300
INT8_MIN_AGREEMENT = 0.992
"""Accuracy control keeps quantizing until INT8 decisions agree with FP32 on this share of the
validation split (the product floor is 0.99; the margin absorbs rounding differences between CPUs)."""


def convert_fp32(release: ModelRelease):  # -> openvino.Model
    """PyTorch weights -> OpenVINO model with uint8 NHWC input and in-graph normalisation."""
    import openvino as ov
    import torch

    from skin_plugin.networks import load_network

    model = load_network(release.weights_path, release.activation, release.network)
    example = torch.zeros(1, INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH)
    ov_model = ov.convert_model(model, example_input=example,
                                input=[(-1, INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH)])
    return add_preprocessing(ov_model)


def add_preprocessing(ov_model):  # -> openvino.Model
    """uint8 NHWC input; convert, subtract 255*mean, divide by 255*std, to NCHW, inside the IR."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(ov_model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess() \
        .convert_element_type(ov.Type.f32) \
        .mean([255.0 * m for m in CHANNEL_MEAN]) \
        .scale([255.0 * s for s in CHANNEL_STD])
    ov_model = ppp.build()
    ov_model.inputs[0].get_tensor().set_names({"image_u8_nhwc"})
    ov_model.outputs[0].get_tensor().set_names({"logits"})
    return ov_model


def _decisions(compiled_model, images: np.ndarray, calibration: Calibration) -> np.ndarray:
    logits = compiled_model(images)[0]
    return calibration.decide(calibration.probabilities(logits))


def quantize_int8(fp32_model, calibration_nhwc: np.ndarray, validation_nhwc: np.ndarray,
                  calibration: Calibration) -> tuple[object, dict]:  # -> (openvino.Model, report)
    """NNCF post-training INT8 with accuracy control on the agreement of decisions with FP32.

    Activation statistics come from ``calibration_nhwc`` (training images). NNCF then ranks the
    quantized operations by how much they change decisions on ``validation_nhwc`` and returns the
    most sensitive ones to floating point until at least ``INT8_MIN_AGREEMENT`` of the validation
    decisions equal FP32's. Returns the model and what was done, for the manifest.
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    core = ov.Core()
    reference = _decisions(core.compile_model(fp32_model, "CPU", FP32_CPU_CONFIG), validation_nhwc, calibration)

    def agreement(compiled_model, items) -> tuple[float, list[float]]:
        items = list(items)
        images = np.concatenate([image for image, _ in items])
        same = _decisions(compiled_model, images, calibration) == np.array([label for _, label in items])
        return float(same.mean()), same.astype(float).tolist()

    calib = nncf.Dataset([calibration_nhwc[i:i + 1] for i in range(len(calibration_nhwc))])
    valid = nncf.Dataset([(validation_nhwc[i:i + 1], int(reference[i])) for i in range(len(reference))],
                         lambda item: item[0])
    # Overflow fix: 7-bit weights, safe on AVX2 CPUs without VNNI (same agreement as 8-bit here).
    advanced = AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE)
    int8 = nncf.quantize_with_accuracy_control(
        fp32_model, calib, valid, agreement, max_drop=1.0 - INT8_MIN_AGREEMENT,
        subset_size=len(calibration_nhwc), advanced_quantization_parameters=advanced)
    compiled = core.compile_model(int8, "CPU", FP32_CPU_CONFIG)
    achieved = float((_decisions(compiled, validation_nhwc, calibration) == reference).mean())
    fq_nodes = sum(1 for op in int8.get_ops() if op.get_type_name() == "FakeQuantize")
    report = {"images": int(len(calibration_nhwc)), "split": "train",
              "tool": "nncf.quantize_with_accuracy_control",
              "accuracy_control": {"metric": "top-1 agreement of decisions with FP32", "split": "val",
                                   "min_agreement": INT8_MIN_AGREEMENT, "achieved": round(achieved, 4)},
              "fake_quantize_nodes": fq_nodes}
    return int8, report


def export(release: ModelRelease, calibration_nhwc: np.ndarray, validation_nhwc: np.ndarray,
           out_dir: Path = IR_DIR, metrics: dict | None = None) -> dict:
    """Write ``lesioncnn_fp32``/``lesioncnn_int8`` IR pairs and the manifest a worker loads."""
    import openvino as ov

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = convert_fp32(release)
    int8, int8_report = quantize_int8(fp32, calibration_nhwc, validation_nhwc, release.calibration)
    files: dict[str, dict] = {}
    for precision, model in (("fp32", fp32), ("int8", int8)):
        xml = out_dir / f"lesioncnn_{precision}.xml"
        ov.save_model(model, xml, compress_to_fp16=False)
        bin_ = xml.with_suffix(".bin")
        files[precision] = {"xml": xml.name, "bin": bin_.name,
                            "sha256": {xml.name: sha256_file(xml), bin_.name: sha256_file(bin_)}}
    m = release.manifest
    manifest = {
        "name": m["name"], "version": m["version"], "classes": m["classes"],
        "input": {"name": "image_u8_nhwc", "layout": "NHWC", "element_type": "u8",
                  "shape": [-1, INPUT_HEIGHT, INPUT_WIDTH, INPUT_CHANNELS], **m["input"]},
        "output": {"name": "logits", "meaning": "raw logits; apply calibration"},
        "calibration": m["calibration"],
        "params": m["params"], "macs": m["macs"],
        "source_weights_sha256": m["weights"]["sha256"],
        "int8_calibration": int8_report,
        "precisions": files,
        "metrics": metrics or {},
        "license": m["license"], "intended_use": m["intended_use"],
    }
    assert set(files) == set(PRECISIONS)
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return manifest


def calibration_images(data_dir: Path, split_file: Path, count: int = CALIBRATION_IMAGES,
                       seed: int = 0) -> np.ndarray:
    """``count`` training-split images (seeded pick), decoded by the MONAI transforms, uint8 NHWC."""
    from training.evaluate import load_evaluation_set

    data = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images", split_file, "train")
    pick = np.random.default_rng(seed).choice(len(data.images), size=min(count, len(data.images)),
                                              replace=False)
    return data.images[np.sort(pick)]


def export_release(release: ModelRelease, data_dir: Path, out_dir: Path = IR_DIR,
                   bootstrap: int = 0) -> dict:
    """Export FP32 + INT8 IR, then score both on the release's held-out splits (validation and test; test
    alone for a refit) and record it in the manifest."""
    from skin_plugin.openvino_classifier import OpenVINOClassifier
    from training.evaluate import evaluate, load_evaluation_set

    split_file = release.directory / "split.csv"
    validation = load_evaluation_set(data_dir / "metadata.csv", data_dir / "images", split_file, "val").images
    manifest = export(release, calibration_images(data_dir, split_file), validation, out_dir)
    ir = IRManifest.load(out_dir)
    summary: dict[str, dict] = {}
    for stale in out_dir.glob("metrics_*"):  # e.g. validation figures of an earlier, train-only release
        stale.unlink()
    for precision in PRECISIONS:
        classifier = OpenVINOClassifier(ir, precision=precision)
        for split in release.held_out_splits:
            report = evaluate(data_dir / "metadata.csv", data_dir / "images", classifier,
                              out_dir / f"metrics_{precision}_{split}.json", split_file, split,
                              bootstrap=bootstrap)
            summary.setdefault(precision, {})[split] = {
                k: report[k]
                for k in ("n_images", "accuracy", "balanced_accuracy", "macro_f1", "mel_auc", "ece")}
    manifest["metrics"] = summary
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    return manifest
