"""Importance-weighted bounds on log p(x) (Burda, Grosse & Salakhutdinov 2016).

With k samples z_i ~ q(z | x) and weights w_i = p(x, z_i) / q(z_i | x),

    ELBO = E[log w],    L_k = E[log (1/k) sum_i w_i],    ELBO = L_1 <= L_k <= L_k' <= log p(x)  for k <= k',

and L_k -> log p(x) as k grows (Theorem 1 of the paper). One set of k weights gives both estimates: their mean
estimates the ELBO and their log-mean-exp estimates L_k. Samples are drawn in chunks and the log-sum-exp is
accumulated, so memory does not grow with k.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def importance_bounds(
    log_weights: Callable[[Tensor, int], Tensor], x: Tensor, k: int, chunk: int = 100
) -> tuple[Tensor, Tensor]:
    """(ELBO estimate, L_k estimate), each [B], from ``log_weights(x, n)`` -> [n, B] log w of n fresh samples."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    log_sum = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    weight_sum = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, k, chunk):
        weights = log_weights(x, min(chunk, k - start)).double()  # [n, B]
        log_sum = torch.logaddexp(log_sum, torch.logsumexp(weights, 0))
        weight_sum += weights.sum(0)
    return weight_sum / k, log_sum - math.log(k)


def iwae_objective(log_weights: Tensor) -> Tensor:
    """The differentiable k-sample bound from log weights [k, B] -> [B] (k = 1 is the ELBO)."""
    return torch.logsumexp(log_weights, 0) - math.log(log_weights.shape[0])
