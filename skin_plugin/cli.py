"""The ``skin-plugin`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from skin_plugin.constants import ACTIVATION
from skin_plugin.dicom.convert import to_dicom_command
from skin_plugin.ir_manifest import DEFAULT_PRECISION
from skin_plugin.release import RELEASE_DIR
from skin_plugin.review import DEFAULT_TARGET_SENSITIVITY
from workers.commands import exporter_command, status_command, submit_command, worker_command
from workers.pacs import listen_command, pull_command, resend_command

app = typer.Typer(help="Skin-lesion batch scoring (LesionCNN, HAM10000 classes). Not for clinical use.",
                  no_args_is_help=True, add_completion=False)
console = Console()
err = Console(stderr=True)

ModelOption = Annotated[Path, typer.Option("--model", help="Release directory or its model.json.")]
BackendOption = Annotated[str, typer.Option(help="openvino (IR, default) or torch (research).")]
PrecisionOption = Annotated[str | None, typer.Option(
    help=f"int8 or fp32 (default: {DEFAULT_PRECISION} for openvino; the torch backend runs fp32 only).")]
DeviceOption = Annotated[str, typer.Option(help="OpenVINO device: CPU, NPU, GPU, AUTO, AUTO:NPU,CPU.")]
StreamsOption = Annotated[int | None, typer.Option(help="OpenVINO inference streams (default: by hint).")]
ThreadsOption = Annotated[int | None, typer.Option(help="Inference threads (default: all cores).")]
ServingModelOption = Annotated[Path | None, typer.Option(
    "--model", help="IR directory (openvino) or release directory (torch); default: the shipped one.")]


@app.command()
def info(model: ModelOption = RELEASE_DIR,
         as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the deployed model: name, version, input size, classes, parameters and MACs."""
    from skin_plugin.release import ModelRelease

    release = ModelRelease.load(model)
    m = release.manifest
    data = {"name": m["name"], "version": m["version"], "classes": m["classes"],
            "input_size": {"channels": m["input"]["channels"], "height": m["input"]["height"],
                           "width": m["input"]["width"]},
            "params": m["params"], "macs": m["macs"], "weights_sha256": m["weights"]["sha256"],
            "calibration": m["calibration"], "license": m["license"], "intended_use": m["intended_use"]}
    if as_json:
        print(json.dumps(data, indent=1))
        return
    table = Table(title=f"{data['name']} {data['version']}", show_header=False)
    for key in ("classes", "input_size", "params", "macs", "weights_sha256", "license", "intended_use"):
        table.add_row(key, str(data[key]))
    console.print(table)


CalibrationFromOption = Annotated[Path | None, typer.Option(
    help="For a refit (trained on train+val): the train-only release of the same recipe (folder or "
         "model.json), or a refit release's recipe_validation.json, whose decision rule and validation "
         "figures it takes.")]


@app.command()
def train(out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/lesioncnn"),
          data: Annotated[Path | None, typer.Option(help="HAM10000 folder (metadata.csv, images/).")] = None,
          epochs: int = 80, patience: int = 40, max_minutes: float = 60.0, seed: int = 0,
          max_batches_per_epoch: Annotated[int, typer.Option(help="Limit batches (smoke runs).")] = 0,
          sampling_power: Annotated[float, typer.Option(help="Class-balanced sampling power (0..1).")] = 0.5,
          dropout: float = 0.2,
          logit_adjust: Annotated[float, typer.Option(
              help="tau of the logit-adjusted loss (0..1; 0 = plain cross-entropy).")] = 0.0,
          cutmix_prob: Annotated[float, typer.Option(help="Share of batches mixed with CutMix.")] = 0.0,
          teacher: Annotated[list[Path] | None, typer.Option(
              help="Distil from these LesionCNN weights (e.g. skin_plugin/release/lesioncnn.pt); "
                   "repeat for the mean of several.")] = None,
          distill_weight: Annotated[float, typer.Option(help="Share of the loss on the teacher.")] = 0.7,
          activation: Annotated[str, typer.Option(help="LesionCNN nonlinearity: relu or silu.")] = ACTIVATION,
          select_on: Annotated[str, typer.Option(
              help="Checkpoint kept: best validation balanced_accuracy, calibrated (shipped rule), or last.")
          ] = "calibrated",
          fit_on: Annotated[str, typer.Option(
              help="Splits trained on: train, or train+val (refit a recipe chosen on validation; needs "
                   "--select-on last and --calibration-from).")
          ] = "train",
          calibration_from: CalibrationFromOption = None,
          split_level: Annotated[str, typer.Option(
              help="lesion (releases), or image: the leaky split of `skin-plugin leakage` (with --no-package).")
          ] = "lesion",
          threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 2,
          network: Annotated[str, typer.Option(
              help="lesioncnn (from scratch) or a ProxylessNAS/MCUNet student, e.g. proxyless-w0.3-r176.")
          ] = "lesioncnn",
          pretrained: Annotated[bool, typer.Option(help="Start a student from its ImageNet weights.")] = False,
          extra_sources: Annotated[str, typer.Option(
              help="Comma-separated extra_derm sources added to training only, e.g. ISIC2017.")] = "",
          aspect_jitter: Annotated[float, typer.Option(
              help="Random aspect change in training (up to a factor 1 + this).")] = 0.0,
          lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, cosine schedule).")] = 3e-3,
          warmup_epochs: int = 3,
          resume: Annotated[bool, typer.Option(help="Continue OUT's interrupted run (its resume.pt).")] = False,
          distill_views: Annotated[int, typer.Option(
              help="Score this many augmented copies of each image with the teacher once (0: every batch).")
          ] = 0,
          package: Annotated[bool, typer.Option(help="Calibrate, evaluate and write the release.")] = True,
          ) -> None:
    """Train LesionCNN (MONAI preprocessing), then calibrate, evaluate and package it into OUT."""
    from training.data import DEFAULT_DATA_DIR
    from training.package import package_release
    from training.train import TrainConfig
    from training.train import train as run_training

    data_dir = data or DEFAULT_DATA_DIR
    try:
        cfg = TrainConfig(data_dir=str(data_dir), out_dir=str(out), seed=seed, max_epochs=epochs,
                          patience=patience, max_minutes=max_minutes,
                          max_batches_per_epoch=max_batches_per_epoch, sampling_power=sampling_power,
                          dropout=dropout, cutmix_prob=cutmix_prob, threads=threads, logit_adjust=logit_adjust,
                          teacher=",".join(str(t) for t in teacher or []),
                          distill_weight=distill_weight if teacher else 0.0,
                          activation=activation, select_on=select_on, fit_on=fit_on,
                          split_level=split_level, network=network, pretrained=pretrained,
                          extra_sources=extra_sources, aspect_jitter=aspect_jitter, lr=lr,
                          warmup_epochs=warmup_epochs, resume=resume, distill_views=distill_views)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if package and cfg.split_level != "lesion":
        err.print("[red]an image-level split leaks lesions across splits: train it with --no-package[/red]")
        raise typer.Exit(2)
    if package and cfg.fit_on != "train" and calibration_from is None:
        err.print("[red]a refit is packaged with --calibration-from (or train it with --no-package)[/red]")
        raise typer.Exit(2)
    run_training(cfg)
    if package:
        package_release(out, out, data_dir, calibration_from=calibration_from)
        console.print(f"release written to {out}")


@app.command("package")
def package_cmd(run: Annotated[Path | None, typer.Option(help="Training run directory.")] = None,
                out: Annotated[Path, typer.Option(help="Release directory to write.")] = RELEASE_DIR,
                data: Annotated[Path | None, typer.Option(help="HAM10000 folder.")] = None,
                card_only: Annotated[bool, typer.Option(
                    help="Only write OUT's MODEL_CARD.md again from its own files (no evaluation).")] = False,
                operating_point_only: Annotated[bool, typer.Option(
                    help="Only choose OUT's review operating point again on validation (a refit: its "
                         "train-only source's, --calibration-from or its recipe_validation.json), then score "
                         "OUT and rewrite its card; no --run, no retraining.")] = False,
                target_sensitivity: Annotated[float, typer.Option(
                    help="Share of the malignant validation images the review operating point flags.")
                ] = DEFAULT_TARGET_SENSITIVITY,
                calibration_from: CalibrationFromOption = None,
                ) -> None:
    """Calibrate a trained run on validation, evaluate it, and write the release and model card."""
    from training.data import DEFAULT_DATA_DIR
    from training.package import choose_operating_point, package_release, rewrite_model_card

    if card_only:
        console.print(f"model card written to {rewrite_model_card(out, data or DEFAULT_DATA_DIR)}")
        return
    if run is None and not operating_point_only:
        err.print("[red]--run is required (or --card-only, --operating-point-only)[/red]")
        raise typer.Exit(2)
    try:
        if operating_point_only:
            release = choose_operating_point(out, data or DEFAULT_DATA_DIR, calibration_from, target_sensitivity)
            threshold = release.calibration.malignant_threshold
            console.print(f"operating point {threshold} written to {out} (release scored again, card rewritten)")
            return
        package_release(run, out, data or DEFAULT_DATA_DIR, calibration_from=calibration_from,
                        target_sensitivity=target_sensitivity)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"release written to {out}")


@app.command("comparison")
def comparison_cmd(model: Annotated[list[str], typer.Option(
                       help="LABEL=PATH[:val,test]: a training run or a release, and the splits to show "
                            "(default val). Repeat for each model.")],
                   out: Annotated[Path, typer.Option(help="JSON to write; in a release folder its model card is "
                                                     "written again with the table.")
                                  ] = RELEASE_DIR / "comparison.json",
                   data: Annotated[Path | None, typer.Option(help="HAM10000 folder.")] = None,
                   bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples per model.")] = 200,
                   bench: Annotated[list[Path] | None, typer.Option(
                       help="`skin-plugin bench` JSON(s) whose OpenVINO speeds go beside the table.")] = None,
                   readme: Annotated[Path | None, typer.Option(
                       help="A README whose generated comparison block is written again (between its markers).")
                   ] = None,
                   ) -> None:
    """Models side by side (levers on validation; the paper's transfer-learning comparison on test)."""
    import shlex
    import sys

    from training.comparison import Candidate, compare
    from training.data import DEFAULT_DATA_DIR
    from training.package import rewrite_model_card

    try:
        candidates = [Candidate.parse(spec) for spec in model]
        result = compare(candidates, out, data or DEFAULT_DATA_DIR, bootstrap,
                         command="skin-plugin " + shlex.join(sys.argv[1:]), benches=bench)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    table = Table(title="Models calibrated on validation, then scored")
    for column in ("model", "params", "MACs", "split", "accuracy", "balanced acc", "mel AUC", "malignant sens",
                   "flagged"):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        for split, m in row["metrics"].items():
            point = m["malignant"]["operating_point"]
            table.add_row(row["label"], f"{row['params']:,}", f"{row['macs'] / 1e6:.1f}M", split,
                          f"{m['accuracy']:.3f}", f"{m['balanced_accuracy']:.3f}", f"{m['mel_auc']:.3f}",
                          f"{point['sensitivity']:.3f}", f"{point['flag_rate']:.3f}")
    console.print(table)
    if (out.parent / "model.json").exists():
        rewrite_model_card(out.parent, data or DEFAULT_DATA_DIR)
    if readme is not None:
        from training.model_card import readme_with_comparison

        readme.write_text(readme_with_comparison(readme.read_text(), result))
        console.print(f"wrote the table into {readme}")


@app.command("leakage")
def leakage_cmd(lesion_run: Annotated[Path, typer.Option(
                    help="A train-only run or release of the recipe on the lesion-level split.")],
                image_run: Annotated[Path, typer.Option(
                    help="The same recipe trained with --split-level image --no-package.")],
                out: Annotated[Path, typer.Option(help="JSON to write (a PNG beside it); in a release folder "
                                                  "its model card is written again with the figures.")
                               ] = RELEASE_DIR / "split_leakage.json",
                data: Annotated[Path | None, typer.Option(help="HAM10000 folder.")] = None,
                ) -> None:
    """Measure how much an image-level split inflates one recipe's figures (lesion- vs image-level runs)."""
    from training.data import DEFAULT_DATA_DIR
    from training.leakage import plot_leakage, split_leakage, study_rows
    from training.package import rewrite_model_card

    data_dir = data or DEFAULT_DATA_DIR
    try:
        study = split_leakage(lesion_run, image_run, data_dir)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    out.write_text(json.dumps(study, indent=1))
    plot_leakage(study, out.with_suffix(".png"))
    table = Table(title="Same recipe, split by lesion vs by image (calibrated decision rule)")
    for column in ("split level", "scored on", "images", "accuracy", "balanced accuracy", "melanoma AUC"):
        table.add_column(column, justify="right")
    for level, split, subset, s in study_rows(study):
        table.add_row(level, f"{split} ({subset.replace('_', ' ')})", str(s["n_images"]), f"{s['accuracy']:.3f}",
                      f"{s['balanced_accuracy']:.3f}", "n/a" if s["mel_auc"] is None else f"{s['mel_auc']:.3f}")
    console.print(table)
    if (out.parent / "model.json").exists():
        rewrite_model_card(out.parent, data_dir)
    console.print(f"written {out}")


@app.command("compare")
def compare_cmd(weights: Annotated[list[Path], typer.Argument(
                    help="Candidate weights: a release's lesioncnn.pt or a run's checkpoint.")],
                split_file: Annotated[Path, typer.Option(help="The split the candidates were trained on.")
                                      ] = RELEASE_DIR / "split.csv",
                data: Annotated[Path | None, typer.Option(help="HAM10000 folder.")] = None,
                json_out: Annotated[Path | None, typer.Option("--json", help="Also write the scores here.")
                                    ] = None,
                flip_tta: Annotated[bool, typer.Option(
                    help="Score the mean logits of the four flips of each image (4x the compute).")] = False,
                ) -> None:
    """Score candidates on validation under the calibrated rule (the adoption criterion; test unread)."""
    from training.compare import compare_candidates
    from training.data import DEFAULT_DATA_DIR

    for path in [*weights, split_file]:
        if not path.exists():
            err.print(f"[red]no such file: {path}[/red]")
            raise typer.Exit(2)
    scores = compare_candidates(weights, split_file, data or DEFAULT_DATA_DIR, flip_tta)
    table = Table(title="Validation, calibrated decision rule")
    table.add_column("candidate", overflow="fold", min_width=24)
    for column in ("accuracy", "balanced accuracy", "score (mean)", "decision weight"):
        table.add_column(column, justify="right")
    for s in scores:
        table.add_row(s.name, f"{s.accuracy:.4f}", f"{s.balanced_accuracy:.4f}", f"{s.score:.4f}",
                      f"{s.decision_weight:g}")
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps([s.to_dict() for s in scores], indent=1))


@app.command("evaluate")
def evaluate_cmd(metadata: Annotated[Path, typer.Option(help="HAM10000-format metadata CSV.")],
                 images: Annotated[Path, typer.Option(help="Folder of <image_id>.jpg files.")],
                 json_out: Annotated[Path, typer.Option("--json", help="Metrics JSON to write.")],
                 model: ServingModelOption = None,
                 backend: BackendOption = "openvino", precision: PrecisionOption = None,
                 device: DeviceOption = "CPU", streams: StreamsOption = None, threads: ThreadsOption = None,
                 split_file: Annotated[Path | None, typer.Option(help="split.csv to filter by.")] = None,
                 split: Annotated[str | None, typer.Option(help="Split to keep (train/val/test).")] = None,
                 bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% CIs.")] = 1000,
                 source: Annotated[str | None, typer.Option(
                     help="Keep one source of a metadata CSV with a source column (extra_derm: PH2).")] = None,
                 ) -> None:
    """Score a folder of labelled images and write accuracy, AUC, calibration and confusion matrix."""
    import tempfile

    from training.data import write_source_metadata
    from training.evaluate import evaluate

    classifier = _classifier(backend, precision, device, model, streams, threads)
    with tempfile.TemporaryDirectory() as tmp:
        if source is not None:
            metadata = write_source_metadata(metadata, source, Path(tmp) / "metadata.csv")
        report = evaluate(metadata, images, classifier, json_out, split_file, split, bootstrap=bootstrap)
    keys = ("n_images", "accuracy", "balanced_accuracy", "macro_f1", "mel_auc", "ece")
    console.print({k: round(report[k], 4) if isinstance(report[k], float) else report[k] for k in keys})
    console.print(f"wrote {json_out} and {json_out.with_suffix('.confusion.png')}")


@app.command()
def export(release: ModelOption = RELEASE_DIR,
           out: Annotated[Path | None, typer.Option(help="IR directory to write.")] = None,
           data: Annotated[Path | None, typer.Option(help="HAM10000 folder.")] = None) -> None:
    """Export the release to OpenVINO IR (FP32 + NNCF INT8) and score both on validation and test."""
    from openvino_ir.export import export_release
    from skin_plugin.ir_manifest import IR_DIR
    from skin_plugin.release import ModelRelease
    from training.data import DEFAULT_DATA_DIR

    manifest = export_release(ModelRelease.load(release), data or DEFAULT_DATA_DIR, out or IR_DIR)
    console.print(manifest["metrics"])


@app.command()
def bench(json_out: Annotated[Path | None, typer.Option("--json", help="Write the results JSON.")] = None,
          seconds: Annotated[float, typer.Option(help="Measuring time per row.")] = 4.0,
          previous_release: Annotated[Path | None, typer.Option(
              help="An earlier release folder, measured beside the shipped one (with --previous-ir).")] = None,
          previous_ir: Annotated[Path | None, typer.Option(help="That release's OpenVINO IR folder.")] = None,
          transfer: Annotated[Path | None, typer.Option(
              help="A run checkpoint of the transfer-learning comparison model (OpenVINO FP32 rows).")] = None,
          ) -> None:
    """Inference speed: LesionCNN vs ResNet50, PyTorch vs OpenVINO FP32/INT8 (needs the train extra).

    Set ONEDNN_MAX_CPU_ISA=AVX2 to measure as on a CPU without AVX-512."""
    from benchmarks.inference_speed import default_rows, run_benchmark

    table = Table(title="Inference speed (this machine, one run)")
    cols = ("name", "backend", "precision", "mode", "batch", "params", "macs", "images_per_s", "p50_ms",
            "p95_ms", "peak_rss_mb")
    for col in cols:
        table.add_column(col, justify="right")

    def show(row: dict) -> None:
        err.print(f"measured {row['name']} {row['backend']} {row['precision']} {row['mode']}: "
                  f"{row['images_per_s']:.0f} images/s")

    if (previous_release is None) != (previous_ir is None):
        err.print("[red]--previous-release and --previous-ir go together[/red]")
        raise typer.Exit(2)
    previous = (str(previous_release), str(previous_ir)) if previous_release and previous_ir else None
    result = run_benchmark(default_rows(seconds, previous, str(transfer) if transfer else None), progress=show)
    for r in result["rows"]:
        table.add_row(*(f"{r[c]:,.1f}" if isinstance(r[c], float) else f"{r[c]:,}" if isinstance(r[c], int)
                        else str(r[c]) for c in cols))
    console.print(table)
    for k, v in result["ratios"].items():
        console.print(f"{k}: {v:.2f}x")
    if json_out:
        json_out.write_text(json.dumps(result, indent=1))


def _classifier(backend: str, precision: str | None, device: str, model: Path | None,
                streams: int | None = None, threads: int | None = None):
    from skin_plugin.classifier import make_classifier
    from skin_plugin.openvino_classifier import DeviceNotAvailableError

    try:
        return make_classifier(backend, precision, device, model, streams, threads)
    except (DeviceNotAvailableError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def _print_results(results: list) -> None:
    table = Table(title=f"{len(results)} result(s)")
    for col in ("input", "prediction", "probability", "melanoma p", "status"):
        table.add_column(col)
    for r in results:
        name = Path(r.input).name + (f" #{r.frame}" if r.frame else "")
        if r.error:
            table.add_row(name, "-", "-", "-", f"[red]failed: {r.error}[/red]")
        else:
            table.add_row(name, r.label, f"{r.probabilities[r.label]:.3f}",
                          f"{r.probabilities['mel']:.3f}", "ok")
    console.print(table)


@app.command()
def score(inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
          out: Annotated[Path | None, typer.Option(
              help="Reports folder: OUT/sr/*.dcm, OUT/json/*.json, OUT/summary.json, OUT/report.html.",
          )] = None,
          broker: Annotated[str | None, typer.Option(
              help="Redis broker of an existing cluster (default: $SKIN_BROKER_URL, else embedded).")] = None,
          workers: Annotated[int | None, typer.Option(help="Embedded worker processes (default: cores).")] = None,
          queue: Annotated[str, typer.Option(help="Queue: urgent or batch.")] = "batch",
          chunk_size: Annotated[int, typer.Option(help="Images per task.")] = 32,
          wait: Annotated[bool, typer.Option(help="Wait for the batch (--no-wait: print its id).")] = True,
          in_process: Annotated[bool, typer.Option(
              "--in-process", help="Score in this process, without a queue.")] = False,
          model: ServingModelOption = None,
          backend: BackendOption = "openvino", precision: PrecisionOption = None,
          device: DeviceOption = "CPU", streams: StreamsOption = None, threads: ThreadsOption = None,
          json_out: Annotated[Path | None, typer.Option("--json", help="Write predictions JSON.")] = None,
          ) -> None:
    """Score DICOM files and photos through the queue (embedded Redis + workers by default) or in-process.

    Prints a prediction for each image and the throughput summary; writes the reports into OUT.
    """
    import time

    from skin_plugin.inputs import collect_inputs

    files = collect_inputs(inputs)
    if not files:
        err.print("no input images found")
        raise typer.Exit(2)
    queued = not in_process and backend == "openvino" and model is None
    if not queued or out is None:
        if not in_process:
            err.print("scoring in-process (the queue needs --out, the OpenVINO backend and the shipped model)")
        from skin_plugin.classifier import model_identity
        from skin_plugin.pipeline import score_files
        from skin_plugin.reports.batch_writer import BatchWriter

        start = time.perf_counter()
        classifier = _classifier(backend, precision, device, model, streams, threads)
        writer = BatchWriter(out, model_identity(classifier)) if out else None
        results = score_files(files, classifier, writer=writer)  # each input's reports, or its failure
        summary = writer.write_summary(results, time.perf_counter() - start).to_dict() if writer else None
    else:
        from workers.commands import score_queued

        results, summary = score_queued(files, out, broker=broker, workers=workers, queue=queue,
                                        chunk_size=chunk_size, precision=precision, device=device, wait=wait)
        if not wait:
            return
    _print_results(results)
    if json_out:
        json_out.write_text(json.dumps([r.to_dict() for r in results], indent=1))
    if summary:
        wait_ms = summary.get("queue_wait_p50_ms")
        console.print(
            f"{summary['scored']} scored, {len(summary['failed'])} failed in {summary['wall_s']:.2f} s: "
            f"{summary['images_per_s'] or 0:.1f} images/s, latency p50/p95 {summary['latency_p50_ms']}/"
            f"{summary['latency_p95_ms']} ms" + (f", queue wait p50 {wait_ms} ms" if wait_ms is not None else "")
            + f"; reports in {out}")
    if any(r.error for r in results):
        raise typer.Exit(1)


app.command("to-dicom", help="Wrap JPEG photos as Dermoscopic Photography DICOM (no re-encoding).")(
    to_dicom_command)
app.command("worker")(worker_command)
app.command("submit")(submit_command)
app.command("status")(status_command)
app.command("exporter")(exporter_command)
app.command("listen")(listen_command)
app.command("pull")(pull_command)
app.command("resend")(resend_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
