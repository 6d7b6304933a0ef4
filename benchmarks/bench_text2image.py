"""Text-to-image GAN-INT-CLS after a fixed budget of batches: speed, and whether the images say what the caption says.

Trains ``text2image`` with its defaults through the real engine (``genzoo.train``, batch 64) on
``mnist-attributes``, then prints one table: the hook's GAN-batch img/s (timed separately, after the text
pre-training phase), the engine's img/s over the whole run, sampling time, peak RSS, and the model's own
evaluation on the test split (class read by the shipped classifier, attributes by the training-free measures; the
readers' accuracies on the real test images are the ceilings).

    flock /tmp/genzoo-bench.lock python benchmarks/bench_text2image.py              # 5,000 batches (~10 min, bf16)
    flock /tmp/genzoo-bench.lock python benchmarks/bench_text2image.py --quick 60   # a smoke run of ~60 s
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

import genzoo
from genzoo.data import load_dataset
from genzoo.data.stream import BatchStream
from genzoo.models.base import DirectStep
from genzoo.registry import models
from timing import as_trained

FULL_BATCHES = models.get("text2image").default_batches  # what `genzoo train text2image` runs (benchmarks/README.md)
HEADLINES = (
    ("held-out caption match", "held_out_caption_match"),
    ("held-out class match", "held_out_class_match"),
    ("held-out attributes match", "held_out_attributes_match"),
    ("training-phrasing caption match", "train_phrasing_caption_match"),
    ("held-out Fréchet (classifier features)", "held_out_frechet_distance"),
    ("classifier accuracy on real test images", "classifier_accuracy_on_real"),
    ("attribute reader accuracy on real test images", "attribute_reader_accuracy_on_real"),
)


def gan_batch_images_per_second(data: str, settings: dict, batches: int = 20) -> float:
    """img/s of the training hook on GAN batches (the text encoder already past its pre-training phase)."""
    dataset = load_dataset(data)
    model = genzoo.create("text2image", dataset.image_shape, **settings)
    stream = BatchStream(dataset.train, dataset.train_labels, 64, model.input_kind, dataset.levels, 0)
    first = model.config.text_pretrain_batches
    step = DirectStep(model, batch_index=first)
    with as_trained(model):  # the precision of the genzoo.train run that follows
        for index in range(first, first + 3):  # warm-up
            step.batch_index = index
            model.training_step(stream.batch(index), step)
        started = time.perf_counter()
        for index in range(first + 3, first + 3 + batches):
            step.batch_index = index
            model.training_step(stream.batch(index), step)
    return batches * 64 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", type=float, help="seconds: train only as many batches as fit (smoke run)")
    parser.add_argument("--batches", type=int, default=FULL_BATCHES)
    parser.add_argument("--data", default="mnist-attributes")
    parser.add_argument("--set", action="append", default=[], help="model setting key=value")
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)

    hook_speed = gan_batch_images_per_second(args.data, settings)
    batches = args.batches
    if args.quick:
        batches = max(2, int(args.quick * hook_speed / 64))
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-text2image-")) / "run"
    started = time.perf_counter()
    run = genzoo.train(
        "text2image", args.data, max_steps=batches, batch_size=64, out=out, progress=False, settings=settings
    )
    wall = time.perf_counter() - started
    metrics = dict(run.metrics)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics.update(hook_gan_images_per_second=hook_speed, wall_seconds=wall, peak_rss_mb=peak_rss_mb)

    print(
        f"text2image on {args.data}: {metrics['train_batches']} batches of 64, torch threads {torch.get_num_threads()}"
    )
    print("| batches | wall s | hook img/s (GAN batches) | engine img/s (whole run) | sample s (64) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {metrics['train_batches']} | {wall:.0f} | {hook_speed:.0f} | {metrics['train_images_per_second']:.0f} "
        f"| {metrics['sample_seconds']:.2f} | {peak_rss_mb:.0f} |"
    )
    print()
    print("| metric (1000 test captions) | value |")
    print("|---|---|")
    for label, key in HEADLINES:
        if key in metrics:
            value = metrics[key]
            print(f"| {label} | {value:.1f} |" if "frechet" in key else f"| {label} | {100 * value:.1f}% |")
    for group in ("thickness", "slant", "colour", "background"):
        print(f"| held-out {group} match | {100 * metrics[f'held_out_{group}_match']:.1f}% |")
    print(f"\nrun directory: {out}")
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
