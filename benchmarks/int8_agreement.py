"""Share of decisions on which the shipped INT8 IR agrees with the FP32 IR, per split; prints JSON.

Validation is the split NNCF's accuracy control tuned on (floor 0.99); test is held out. ``--avx2`` caps
oneDNN at AVX2 (``ONEDNN_MAX_CPU_ISA``), standing in for a CPU without AVX-512/VNNI/AMX.

    python -m benchmarks.int8_agreement [--avx2]
"""

from __future__ import annotations

import argparse
import json
import os


def main(avx2: bool = False) -> dict:
    if avx2:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # read when OpenVINO's CPU plugin loads
    from skin_plugin.openvino_classifier import OpenVINOClassifier
    from skin_plugin.release import RELEASE_DIR
    from training.data import DEFAULT_DATA_DIR
    from training.evaluate import load_evaluation_set

    fp32, int8 = OpenVINOClassifier(precision="fp32"), OpenVINOClassifier(precision="int8")
    result: dict = {"isa_cap": "AVX2" if avx2 else None}
    for split in ("val", "test"):
        images = load_evaluation_set(DEFAULT_DATA_DIR / "metadata.csv", DEFAULT_DATA_DIR / "images",
                                     RELEASE_DIR / "split.csv", split).images
        same = fp32.predict(images).labels == int8.predict(images).labels
        result[split] = {"images": int(len(same)), "agreement": round(float(same.mean()), 4),
                         "differing": int((~same).sum())}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--avx2", action="store_true", help="cap oneDNN at AVX2")
    print(json.dumps(main(parser.parse_args().avx2), indent=1))
