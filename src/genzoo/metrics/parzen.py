"""Parzen-window (Gaussian kernel density) log-likelihood of any sampler, as in the GAN and AAE papers.

A model's samples s_1..s_N define the density

    p(x) = (1/N) sum_i N(x; s_i, sigma^2 I),
    log p(x) = logsumexp_i(-|x - s_i|^2 / (2 sigma^2)) - log N - (D/2) log(2 pi sigma^2),

whose single bandwidth sigma is chosen to maximize the mean log-likelihood of a validation set and then scored
on the test set (Goodfellow et al. 2014, Sec. 5; Makhzani et al. 2016, Sec. 3). The estimate is known to be
weak in high dimension (Theis et al. 2016); it is reported because the papers did, with its sample counts.

Sigma is fitted by a bounded scalar search (scipy) on log sigma over precomputed squared distances, instead of
the papers' coarse grid; the squared distances are the expensive part and are computed once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.no_grad()
def squared_distances(x: Tensor, samples: Tensor, batch_size: int = 500) -> Tensor:
    """|x_j - s_i|^2 for every pair: x [M, ...], samples [N, ...] -> [M, N] (float64 for the large-sum terms)."""
    samples = samples.flatten(1).double()
    sample_norms = (samples**2).sum(1)
    rows = []
    for chunk in x.flatten(1).double().split(batch_size):
        rows.append(((chunk**2).sum(1, keepdim=True) - 2 * chunk @ samples.T + sample_norms).clamp(min=0))
    return torch.cat(rows)


def log_density_from_distances(distances: Tensor, sigma: float, dims: int) -> Tensor:
    """Parzen log p(x_j) [M] from squared distances [M, N] to the N kernel centres."""
    count = distances.shape[1]
    return (
        torch.logsumexp(-distances / (2 * sigma**2), 1)
        - math.log(count)
        - 0.5 * dims * math.log(2 * math.pi * sigma**2)
    )


def parzen_log_density(x: Tensor, samples: Tensor, sigma: float, batch_size: int = 500) -> Tensor:
    """Parzen-window log p(x) in nats for each row of ``x`` [M, ...] -> [M], kernels at ``samples``; computed in
    chunks of ``batch_size`` rows so memory stays O(batch_size * N)."""
    dims = x[0].numel()
    return torch.cat(
        [log_density_from_distances(squared_distances(chunk, samples), sigma, dims) for chunk in x.split(batch_size)]
    )


def fit_sigma(samples: Tensor, validation: Tensor, bounds: tuple[float, float] = (1e-3, 10.0)) -> float:
    """The bandwidth that maximizes the mean Parzen log-likelihood of ``validation``."""
    distances = squared_distances(validation, samples)
    dims = validation[0].numel()

    def negative_mean(log_sigma: float) -> float:
        return -float(log_density_from_distances(distances, math.exp(log_sigma), dims).mean())

    from scipy.optimize import minimize_scalar  # imported here: scipy.optimize costs ~1 s to import

    result = minimize_scalar(
        negative_mean, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded", options={"xatol": 1e-4}
    )
    return math.exp(float(result.x))


def parzen_metrics(samples: Tensor, validation: Tensor, test: Tensor, sigma: float | None = None) -> dict[str, float]:
    """Fit sigma on ``validation`` (unless given) and score ``test``: mean log-likelihood in nats, its standard
    error over test images, sigma and the counts. All three tensors must be in the same space (e.g. [0, 1] pixels).
    """
    if sigma is None:
        sigma = fit_sigma(samples, validation)
    log_density = parzen_log_density(test, samples, sigma)
    return {
        "parzen_log_likelihood_nats": float(log_density.mean()),
        "parzen_standard_error": float(log_density.std() / math.sqrt(len(log_density))),
        "parzen_sigma": sigma,
        "parzen_samples": len(samples),
        "parzen_validation_images": len(validation),
        "parzen_test_images": len(test),
    }
