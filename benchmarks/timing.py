"""Timing shared by the benchmark scripts (they run as `python benchmarks/NAME.py`, so this folder is on the path)."""

import time

import torch

from genzoo.data.stream import BatchStream
from genzoo.engine import default_precision
from genzoo.models.base import DirectStep, GenerativeModel


def as_trained(model: GenerativeModel) -> torch.autocast:
    """The autocast that ``genzoo.train`` runs ``model`` in on this machine (bf16 where the model prefers it and the
    CPU computes bf16 natively), so a hook loop times the arithmetic the engine does; the layout is the model's own."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=default_precision(model.precision).startswith("bf16"))


def hook_images_per_second(model: GenerativeModel, stream: BatchStream, steps: int, warmup: int = 3) -> float:
    """Training img/s through the model's own training hook (no engine; in the engine's precision), after
    ``warmup`` untimed batches."""
    batches = [stream.batch(i) for i in range(steps + warmup)]
    step = DirectStep(model)
    with as_trained(model):
        for batch in batches[:warmup]:
            model.training_step(batch, step)
        start = time.perf_counter()
        for batch in batches[warmup:]:
            model.training_step(batch, step)
    return steps * stream.batch_size / (time.perf_counter() - start)


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a square matrix multiply (the best of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
