"""One table for every registered model: same data, same budget, measured through the real engine.

    GENZOO_DATA_DIR=../shared/data python benchmarks/run_all.py [--steps 200] [--models nade dcgan ...]

For each model (in its own process, so peak RSS is its own): training img/s in fp32 and, where the precision
`genzoo train` picks on this machine differs (bf16 autocast for the models that measured the same quality in it,
only where the hardware computes bf16 natively), in that precision (the engine's steady rate: every batch after
the first, with logging and checkpoints, without Lightning's one-off setup); the time to sample 64 images; peak
RSS; the model's headline quality metric after the budget. It also measures this machine's matrix-multiply peak
(fp32 and bf16 GFLOP/s) and reports each model's achieved rate in its default precision as a fraction of that
precision's peak (DCGAN's is the issue's target), the peak measured in the model's own process just before and
after its training: a shared or throttled machine drifts by a quarter within minutes, so a peak taken at the end
of the table can belong to another speed. Writes the table into benchmarks/README.md between the "run_all"
markers.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import torch

from timing import matmul_peak

QUALITY_KEYS = [  # each family's headline measure, first match wins
    "nll_nats", "mask_iou", "frechet_distance", "a_to_b_target_accuracy", "mean_attribute_accuracy",
    "held_out_attributes_match", "reconstruction_nats",
]  # fmt: skip
TABLES = Path(__file__).with_name("README.md")  # run_all rewrites the block between the markers
BEGIN, END = "<!-- run_all: begin -->", "<!-- run_all: end -->"


def flops_per_batch(name: str, batch_size: int) -> int:
    """FLOPs of one training batch (forward and backward of every update the model makes), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.stream import BatchStream
    from genzoo.models.base import DirectStep

    cls = genzoo.registry.models.get(name)
    dataset = load_dataset(cls.default_data)
    model = genzoo.create(name, dataset.image_shape)
    stream = BatchStream(dataset.train, dataset.train_labels, batch_size, model.input_kind, dataset.levels, 0)

    counter = FlopCounterMode(display=False)
    try:
        with counter:
            model.training_step(stream.batch(0), DirectStep(model))
    except RuntimeError:  # torch cannot count through autograd.grad (gradient penalties): reported as "-"
        return 0
    return counter.get_total_flops()


def measure(name: str, steps: int, batch_size: int) -> dict:
    import genzoo
    from genzoo.engine import default_precision
    from genzoo.registry import models

    cls = models.get(name)
    default = default_precision(cls.precision)  # what `genzoo train` uses on this machine
    row = {"model": name, "family": cls.family, "data": cls.default_data, "precision": default}
    dtype = torch.bfloat16 if default == "bf16-mixed" else torch.float32
    before = matmul_peak(dtype)  # this machine's speed drifts: the row's peak is measured beside its training
    with tempfile.TemporaryDirectory() as tmp:
        for label, precision in [("fp32", "32-true"), ("default", default)]:
            if label == "default" and precision == "32-true":
                break
            run = genzoo.train(
                name, max_steps=steps, batch_size=batch_size, out=Path(tmp) / label, precision=precision,
                progress=False, samples=64,
            )  # fmt: skip
            row[f"img_per_s_{label}"] = run.metrics["train_images_per_second"]
            row["sample_64_s"] = run.metrics["sample_seconds"]
            quality = next((k for k in QUALITY_KEYS if k in run.metrics), None)
            row["quality"] = f"{quality} {run.metrics[quality]:.4g}" if quality else "-"
    row["peak_gflops"] = (before + matmul_peak(dtype)) / 2
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = row.get("img_per_s_default", row["img_per_s_fp32"])
    row["gflops"] = flops_per_batch(name, batch_size) / batch_size * rate / 1e9
    return row


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def table(rows: list[dict], steps: int, batch_size: int, peaks: dict) -> str:
    from genzoo.engine import native_bf16

    lines = [
        f"Measured {date.today()} on {cpu_name()} ({platform.machine()}, {torch.get_num_threads()} threads, "
        f"native bf16: {'yes' if native_bf16() else 'no'}), torch {torch.__version__}, {steps} batches of "
        f"{batch_size} per model on its default data.",
        f"Matrix-multiply peak at the end: {peaks['fp32']:.0f} GFLOP/s fp32, {peaks['bf16']:.0f} GFLOP/s bf16; "
        f"each row's fraction uses the peak of its precision measured in its own process, before and after its "
        f"training (their mean, in the row).",
        "",
        "| model | family | data | train img/s fp32 | default precision here | img/s in it |"
        " achieved GFLOP/s in the default (% of the row's peak) | row's peak GFLOP/s | 64 samples (s) |"
        " peak RSS (MB) | quality |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        default = f"{r['img_per_s_default']:,.0f}" if "img_per_s_default" in r else "(fp32)"
        # torch counts matmul/conv FLOPs only: models made of other ops (NADE's gathers) show "-"
        peak = r["peak_gflops"]  # of the precision it ran in, measured beside its training
        achieved = f"{r['gflops']:.1f} ({100 * r['gflops'] / peak:.0f}%)" if r["gflops"] else "-"
        lines.append(
            f"| {r['model']} | {r['family']} | {r['data']} | {r['img_per_s_fp32']:,.0f} | {r['precision']} | "
            f"{default} | {achieved} | {peak:.0f} | {r['sample_64_s']:.2f} | {r['peak_rss_mb']:,.0f} | {r['quality']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave README.md alone")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.batch_size)))
        return
    import genzoo

    rows = []
    for name in args.models or genzoo.list_models():
        command = [sys.executable, __file__, "--one", name, "--steps", str(args.steps)]
        command += ["--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    text = table(rows, args.steps, args.batch_size, peaks)
    print(text)
    if not args.no_write:
        current = TABLES.read_text()
        if BEGIN in current:
            head, rest = current.split(BEGIN)
            current = head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1]
        else:
            current += f"\n## Every model, one table (benchmarks/run_all.py)\n\n{BEGIN}\n{text}\n{END}\n"
        TABLES.write_text(current)


if __name__ == "__main__":
    main()
