"""Per-image cost of the I/O around the model: decoding 600x450 JPEG-in-DICOM to model size, and
writing the SR + JSON reports. Best and median over repeated passes; prints JSON.

``decode_to_model_size`` is the whole ``read_input`` of a file already in memory (DICOM parse, header
record, checks, JPEG decode, resize); the rows after it split that cost: the JPEG stream alone through
the serving decoder (libjpeg-turbo) and through the PIL draft route it replaced.

    python -m benchmarks.io_costs [--json benchmarks/results/io_costs.json]
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_frames

from skin_plugin.classifier import make_classifier, model_identity
from skin_plugin.decode import decode_image
from skin_plugin.dicom.convert import jpeg_to_dicom
from skin_plugin.dicom.reader import read_file_bytes, read_input
from skin_plugin.pipeline import score_files
from skin_plugin.reports.batch_writer import BatchWriter

FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "ham10000_fullres" / "images"


def _per_image_ms(fn, items: list, passes: int) -> dict[str, float]:
    runs = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        runs.append(1000 * (time.perf_counter() - t0) / len(items))
    return {"best_ms": round(min(runs), 3), "median_ms": round(float(np.median(runs)), 3)}


def main(n: int = 50, passes: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dicoms = []
        for i, jpeg in enumerate(sorted(FULLRES.glob("*.jpg"))[:n]):
            dicoms.append(tmp / f"{i}.dcm")
            jpeg_to_dicom(jpeg, dicoms[-1])
        files = [(path, read_file_bytes(path)) for path in dicoms]
        decode = _per_image_ms(lambda f: read_input(*f), files, passes)
        streams = [bytes(next(generate_frames(dcmread(p).PixelData, number_of_frames=1))) for p in dicoms]
        jpeg_fast = _per_image_ms(decode_image, streams, passes)
        jpeg_pil = _per_image_ms(lambda s: decode_image(Image.open(BytesIO(s))), streams, passes)
        classifier = make_classifier()
        results = score_files(dicoms, classifier)
        writer = BatchWriter(tmp / "out", model_identity(classifier))
        writer.write_result(results[0])  # builds the SR template once
        when = datetime.now()
        write = _per_image_ms(lambda r: writer.write_result(r, when), results, passes)
    return {"images": len(dicoms), "source": "600x450 JPEG baseline in Dermoscopic Photography DICOM",
            "decode_to_model_size": decode, "jpeg_stream_only_libjpeg_turbo": jpeg_fast,
            "jpeg_stream_only_pil_draft": jpeg_pil, "write_sr_and_json": write}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the result here")
    result = json.dumps(main(), indent=1)
    if out := parser.parse_args().json:
        out.write_text(result + "\n")
    print(result)
