"""Device selection, fork safety and the torch-free serving path."""

import json
import multiprocessing as mp
import subprocess
import sys

import numpy as np
import openvino as ov
import pytest

from skin_plugin.decode import decode_image
from skin_plugin.openvino_classifier import DeviceNotAvailableError, OpenVINOClassifier, check_device


def test_missing_device_error_lists_available_devices():
    available = ov.Core().available_devices
    missing = next(d for d in ("NPU", "GPU", "FPGA") if d not in available)
    with pytest.raises(DeviceNotAvailableError) as info:
        OpenVINOClassifier(device=missing)
    assert missing in str(info.value) and str(available) in str(info.value)


def test_check_device_rules():
    check_device("CPU", ["CPU"])
    check_device("AUTO", ["CPU"])
    check_device("AUTO:NPU,CPU", ["CPU"])
    with pytest.raises(DeviceNotAvailableError):
        check_device("AUTO:NPU,GPU", ["CPU"])
    with pytest.raises(DeviceNotAvailableError):
        check_device("NPU", ["CPU", "GPU.0"])


@pytest.mark.parametrize("device", ["CPU", "AUTO", "AUTO:NPU,CPU"])
def test_devices_present_here_score(device, samples_dir):
    images = np.stack([decode_image(p) for p in sorted(samples_dir.glob("*.jpg"))])
    pred = OpenVINOClassifier(device=device).predict(images)
    assert pred.probabilities.shape == (len(images), 7)
    np.testing.assert_allclose(pred.probabilities.sum(1), 1, atol=1e-5)


def test_static_batch_pads_and_trims(samples_dir):
    images = np.stack([decode_image(p) for p in sorted(samples_dir.glob("*.jpg"))])
    static = OpenVINOClassifier(precision="fp32", static_batch=4).logits(images)
    dynamic = OpenVINOClassifier(precision="fp32").logits(images)
    np.testing.assert_allclose(static, dynamic, atol=1e-5)


def _child(clf, images, queue):
    queue.put(clf.predict(images).labels.tolist())


def test_created_before_fork_compiles_in_the_child(samples_dir):
    """Created (not yet compiled) in a parent, used in a forked child as in Celery prefork.

    Compiling and inferring in the parent before forking is not supported: OpenVINO's thread pool does
    not survive fork (a child then hangs), which is why compilation is lazy and per process.
    """
    images = np.stack([decode_image(p) for p in sorted(samples_dir.glob("*.jpg"))])
    clf = OpenVINOClassifier()
    assert clf._compiled is None
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(clf, images, queue))
    proc.start()
    try:
        got = queue.get(timeout=120)
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    assert got == OpenVINOClassifier().predict(images).labels.tolist()


def test_serving_path_imports_neither_torch_nor_monai(samples_dir, tmp_path):
    """Scoring with the OpenVINO backend works with torch and MONAI made unimportable."""
    code = f"""
import sys, json
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'monai'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from pathlib import Path
from skin_plugin.classifier import make_classifier
from skin_plugin.pipeline import score_files
res = score_files(sorted(Path({str(samples_dir)!r}).glob('*.jpg')), make_classifier())
print(json.dumps([r.label for r in res]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])) == 7
