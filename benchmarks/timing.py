"""Timing shared by the benchmark scripts (they run as `python benchmarks/NAME.py`, so this folder is on the path)."""

import time

from genzoo.data.stream import BatchStream
from genzoo.models.base import DirectStep, GenerativeModel


def hook_images_per_second(model: GenerativeModel, stream: BatchStream, steps: int, warmup: int = 3) -> float:
    """Training img/s through the model's own training hook (no engine), after ``warmup`` untimed batches."""
    batches = [stream.batch(i) for i in range(steps + warmup)]
    step = DirectStep(model)
    for batch in batches[:warmup]:
        model.training_step(batch, step)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        model.training_step(batch, step)
    return steps * stream.batch_size / (time.perf_counter() - start)
