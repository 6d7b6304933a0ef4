"""Test negative log-likelihood in nats per image and bits per dimension."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def nll_metrics(
    log_prob: Callable[[Tensor], Tensor], x: Tensor, input_kind: str, levels: int, batch_size: int = 500
) -> dict[str, float]:
    """Mean test NLL. For a density over dequantized data in [0, 1)^D, ``nll_nats`` is the discrete NLL bound
    -E[log p((k + u) / L)] + D log L of the L-level data (Theis et al. 2016), so it compares with discrete models;
    the continuous value is reported as ``density_nll_nats``.
    """
    dims = math.prod(x.shape[1:])
    total = sum(float(-log_prob(chunk).double().sum()) for chunk in x.split(batch_size))
    nll = total / len(x)
    out = {}
    if input_kind == "dequantized":
        out["density_nll_nats"] = nll
        nll += dims * math.log(levels)
    out["nll_nats"] = nll
    out["bits_per_dim"] = nll / (dims * math.log(2))
    out["test_images"] = len(x)
    return out
