"""Conditional and translation GANs after a fixed CPU budget: CycleGAN, StarGAN, text-to-image (GAN-INT-CLS).

Each model is trained through the real engine (``genzoo.train``) on ``mnist-attributes`` for as many batches as
its measured speed allows in the budget (a few batches are timed first), then evaluated by its own ``evaluate``
(attributes read by the training-free measures, class by the shipped digit classifier). Prints one table.

    flock /tmp/genzoo-bench.lock python benchmarks/bench_translation.py            # 480 s per model
    flock /tmp/genzoo-bench.lock python benchmarks/bench_translation.py --quick 20
    ... --models cyclegan,stargan --batches 2500,5300    # fixed batch budgets (about 10 idle minutes each)
    ... --models stargan --set stargan.critic_steps=1          # model settings, as --set key=value
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

import genzoo
from genzoo.data import load_dataset
from genzoo.data.stream import BatchStream
from genzoo.models.base import DirectStep
from timing import as_trained

MODELS = ("cyclegan", "stargan", "text2image")
HEADLINES = {
    "cyclegan": (
        "a_to_b_target_accuracy",
        "a_to_b_class_preservation",
        "a_to_b_other_attributes_kept",
        "a_to_b_cycle_l1",
        "b_to_a_target_accuracy",
        "b_to_a_class_preservation",
        "b_to_a_cycle_l1",
        "a_to_b_frechet_distance",
        "real_class_accuracy",
    ),
    "stargan": (
        "thickness_target_accuracy",
        "slant_target_accuracy",
        "colour_target_accuracy",
        "background_target_accuracy",
        "mean_attribute_accuracy",
        "all_attributes_accuracy",
        "class_preservation",
        "unchanged_class_preservation",
        "background_alone_class_preservation",
        "reconstruction_l1",
        "auxiliary_classifier_accuracy",
        "real_class_accuracy",
    ),
    "text2image": (
        "held_out_caption_match",
        "held_out_class_match",
        "held_out_attributes_match",
        "train_phrasing_caption_match",
        "held_out_frechet_distance",
    ),
}


def seconds_per_batch(name: str, data: str, batch_size: int, settings: dict, batches: int = 5) -> float:
    dataset = load_dataset(data)
    model = genzoo.create(name, dataset.image_shape, **settings)
    stream = BatchStream(dataset.train, dataset.train_labels, batch_size, model.input_kind, dataset.levels, 0)
    step = DirectStep(model)
    with as_trained(model):  # the precision of the genzoo.train run that follows
        model.training_step(stream.batch(0), step)  # warm-up
        started = time.perf_counter()
        for index in range(1, batches + 1):
            step.batch_index = index
            model.training_step(stream.batch(index), step)
    return (time.perf_counter() - started) / batches


def run(
    name: str, data: str, budget: float, batch_size: int, out: Path, settings: dict, batches: int | None = None
) -> dict:
    steps = batches or max(2, int(budget / seconds_per_batch(name, data, batch_size, settings)))
    started = time.perf_counter()
    result = genzoo.train(
        name, data, max_steps=steps, batch_size=batch_size, out=out / name, progress=False, settings=settings
    )
    total = time.perf_counter() - started
    metrics = dict(result.metrics)
    metrics.update(steps=steps, wall_seconds=total)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", type=float, default=None, help="seconds of training per model (smoke run)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds of training per model (full mode)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument(
        "--batches", default=None, help="comma-separated batch counts, one per model (instead of a time budget)"
    )
    parser.add_argument("--data", default="mnist-attributes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="keep the run directories here")
    parser.add_argument("--set", action="append", default=[], help="MODEL.key=value model setting (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write all metrics as JSON")
    args = parser.parse_args()
    budget = args.quick if args.quick is not None else args.budget
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-translation-"))
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, budget {budget:.0f} s per model"
    )
    settings: dict[str, dict] = {}
    for assignment in args.set:
        target, _, value = assignment.partition("=")
        model_name, _, key = target.partition(".")
        settings.setdefault(model_name, {})[key] = value
    names = args.models.split(",")
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [None] * len(names)
    if len(batches) != len(names):
        parser.error("--batches needs one count per model")
    rows = {}
    for name, count in zip(names, batches):
        rows[name] = run(name, args.data, budget, args.batch_size, out, settings.get(name, {}), count)
        rows[name]["settings"] = settings.get(name, {})
        rows[name]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows[name]["load_average_after"] = os.getloadavg()[0]
    print("| model | settings | steps | wall s | train img/s | sample s | peak RSS MB | load after | metrics |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        shown = ", ".join(f"{k} {m[k]:.3f}" for k in HEADLINES[name] if isinstance(m.get(k), float))
        print(
            f"| {name} | {m['settings'] or 'defaults'} | {m['steps']} | {m['wall_seconds']:.0f} | "
            f"{m['train_images_per_second']:.1f} | {m['sample_seconds']:.2f} | "
            f"{m['peak_rss_mb']:.0f} | {m['load_average_after']:.1f} | {shown} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    print(f"runs: {out}")


if __name__ == "__main__":
    main()
