"""Progressive GAN against DCGAN at an equal CPU budget, and Puzzle-GAN, trained end to end through the CLI on MNIST.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_progressive.py              # full: 360 s per model
    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_progressive.py --quick 30   # a smoke run

1. Training img/s of each ProGAN stage (4x4 ... 32x32, alpha 1) and of DCGAN and Puzzle-GAN, from a timed loop of
   the models' training hook at batch 64 (after warm-up steps).
2. ``genzoo train`` runs, each in its own process (peak RSS from os.wait4): ProGAN with ``--set resolution=32``
   for the budget, its schedule planned from the per-stage rates; DCGAN for as many batches as the ProGAN run's
   measured training seconds allow at DCGAN's rate (equal CPU time); Puzzle-GAN for the budget.
3. The runs' metrics.json: the FID-style distance, KID, precision/recall in the MNIST feature net's space (2,000
   generated vs the 1,000 test images), Puzzle-GAN's mask IoU and appearance L1, sampling time of 64 images.

``--threads`` sets OMP_NUM_THREADS for every process (default 1: on a CPU shared with other jobs, two OpenMP
threads were measured up to 40x slower than one on ProGAN's small convolutions, as each parallel region waits
for a descheduled thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BATCH = 64
PROGAN_PHASE_IMAGES = 10000  # the model's default
QUICK_PHASE_IMAGES = 640


def rates(data: str, steps: int) -> dict[str, float]:
    """img/s of the training hook: ProGAN per stage, DCGAN, Puzzle-GAN."""
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.transforms import prepare
    from genzoo.models.base import DirectStep

    dataset = load_dataset(data)
    batch = {"x": prepare(dataset.train[:BATCH], "signed", dataset.levels)}

    def timed(model: torch.nn.Module, step: DirectStep) -> float:
        for _ in range(2):
            model.training_step(batch, step)
        start = time.perf_counter()
        for _ in range(steps):
            model.training_step(batch, step)
        return steps * BATCH / (time.perf_counter() - start)

    out = {}
    progan = genzoo.create("progan", dataset.image_shape, resolution=32, phase_images=BATCH)
    for level in range(progan.levels):
        # with one-batch phases, batch 2 * level is the stable phase of ``level``
        out[f"progan-{4 * 2**level}"] = timed(progan, DirectStep(progan, 2 * level))
    for name in ("dcgan", "puzzlegan"):
        model = genzoo.create(name, dataset.image_shape)
        out[name] = timed(model, DirectStep(model, 10**6))
    return out


def progan_seconds(rate: dict[str, float], batches: int, phase_images: int) -> float:
    """Training-hook seconds of the first ``batches`` of the growth schedule at the measured per-stage rates."""
    from genzoo.models.adversarial.progan import growth

    return sum(BATCH / rate[f"progan-{4 * 2 ** growth(b * BATCH, phase_images, 4)[0]}"] for b in range(batches))


def plan_progan(rate: dict[str, float], seconds: float, phase_images: int) -> int:
    """Batches of the growth schedule that fit ``seconds`` at the measured per-stage rates."""
    batches = 2
    while progan_seconds(rate, batches + 100, phase_images) <= seconds:
        batches += 100
    return batches


def train(model: str, data: str, steps: int, out: Path, settings: dict, env: dict) -> dict:
    command = [str(Path(sys.executable).with_name("genzoo")), "train", model, "--data", data, "--max-steps", str(steps)]
    command += ["--batch-size", str(BATCH), "--out", str(out), "--checkpoint-every", "500"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{model} failed: {process.stderr.read().decode()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    train_seconds = metrics["train_batches"] * BATCH / metrics["train_images_per_second"]
    return {"wall_seconds": wall, "train_seconds": train_seconds, "peak_rss_mb": usage.ru_maxrss / 1024, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", type=float, default=None, help="seconds of training per model (smoke run)")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds of training per model (full mode)")
    parser.add_argument("--progan-batches", type=int, default=None, help="ProGAN batches instead of a time plan")
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder for the run directories (default: temporary)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    seconds = args.quick if args.quick is not None else args.budget
    phase_images = QUICK_PHASE_IMAGES if args.quick is not None else PROGAN_PHASE_IMAGES
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-progressive-"))
    env = dict(os.environ)
    load_before = os.getloadavg()

    rate = rates(args.data, 4 if args.quick is not None else 10)
    progan_steps = args.progan_batches or plan_progan(rate, seconds, phase_images)
    progan = train(
        "progan",
        args.data,
        progan_steps,
        root / "progan",
        {"resolution": 32, "phase_images": phase_images},
        env,
    )
    # equal CPU time from the hook rates measured together in this run (a ratio, robust to the machine's load)
    dcgan_steps = max(2, round(progan_seconds(rate, progan_steps, phase_images) * rate["dcgan"] / BATCH))
    dcgan = train("dcgan", args.data, dcgan_steps, root / "dcgan", {}, env)
    puzzle_steps = max(2, round(seconds * rate["puzzlegan"] / BATCH))
    puzzle = train("puzzlegan", args.data, puzzle_steps, root / "puzzlegan", {}, env)
    load_after = os.getloadavg()

    print(f"# bench_progressive: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or 'cpu'}")
    print(f"# {os.cpu_count()} cores, OMP threads {args.threads}, data {args.data}, batch {BATCH}, runs in {root}")
    print(f"# load average (1/5/15 min) before {load_before}, after {load_after}")
    print()
    print("Training hook img/s (batch 64, after warm-up):")
    print("| " + " | ".join(rate) + " |")
    print("|" + "---|" * len(rate))
    print("| " + " | ".join(f"{v:.0f}" for v in rate.values()) + " |")
    print()
    header = ["model", "batches", "train s", "wall s", "img/s", "sample 64 s", "peak RSS MB", "FID-style", "KID"]
    header += ["precision", "recall", "mask IoU", "appearance L1"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, run in (("progan (resolution 32)", progan), ("dcgan (equal CPU time)", dcgan), ("puzzlegan", puzzle)):
        cells = [
            name,
            str(run["train_batches"]),
            f"{run['train_seconds']:.0f}",
            f"{run['wall_seconds']:.0f}",
            f"{run['train_images_per_second']:.0f}",
            f"{run['sample_seconds']:.2f}",
            f"{run['peak_rss_mb']:.0f}",
            f"{run['frechet_distance']:.1f}",
            f"{run['kid']:.3f}",
            f"{run['precision']:.3f}",
            f"{run['recall']:.3f}",
            f"{run['mask_iou']:.3f}" if "mask_iou" in run else "-",
            f"{run['appearance_l1']:.3f}" if "appearance_l1" in run else "-",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
