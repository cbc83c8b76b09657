"""Footprint of the serving install: site-packages size and per-process memory with the IR loaded.

Run with the worker venv's python (``make worker-footprint`` builds it with plain ``pip install .``).
Prints JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import sysconfig
import time
from pathlib import Path


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main(samples: Path) -> dict:
    import numpy as np

    from skin_plugin.classifier import make_classifier
    from skin_plugin.decode import decode_image

    site = Path(sysconfig.get_paths()["purelib"])
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    clf = make_classifier()
    images = np.stack([decode_image(p) for p in sorted(samples.glob("*.jpg"))])
    clf.predict(images)
    load_s = time.perf_counter() - t0
    return {
        "site_packages_mb": round(_dir_mb(site), 1),
        "torch_installed": (site / "torch").exists(),
        "monai_installed": (site / "monai").exists(),
        "torch_imported": "torch" in sys.modules,
        "rss_after_imports_mb": round(base_rss, 1),
        "peak_rss_with_model_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_and_first_batch_s": round(load_s, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1))
