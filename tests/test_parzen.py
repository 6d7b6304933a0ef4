"""Parzen window: exact for one kernel, the Gaussian convolution identity for many, and the closed-form bandwidth."""

import math

import pytest
import torch

from genzoo.metrics.parzen import fit_sigma, parzen_log_density, parzen_metrics


def gaussian_log_density(x, mean, variance):
    dims = x.shape[1]
    return -((x - mean) ** 2).sum(1) / (2 * variance) - 0.5 * dims * math.log(2 * math.pi * variance)


def test_one_kernel_is_exactly_a_gaussian_density():
    centre, x = torch.randn(1, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    assert torch.allclose(parzen_log_density(x, centre, 0.7), gaussian_log_density(x, centre, 0.49), atol=1e-10)


def test_kernels_on_gaussian_samples_give_the_convolved_gaussian():
    # E_s[N(x; s, sigma^2 I)] over s ~ N(0, v I) is N(x; 0, (v + sigma^2) I)
    torch.manual_seed(0)
    variance, sigma = 0.5, 0.4
    samples = math.sqrt(variance) * torch.randn(200_000, 2, dtype=torch.float64)
    x = torch.tensor([[0.0, 0.0], [0.5, -0.3], [1.0, 1.0]], dtype=torch.float64)
    expected = gaussian_log_density(x, 0.0, variance + sigma**2)
    assert torch.allclose(parzen_log_density(x, samples, sigma), expected, atol=0.01)


def test_fitted_sigma_is_the_maximum_likelihood_bandwidth():
    # with a single kernel centre s, the best sigma^2 is the mean squared distance per dimension
    torch.manual_seed(1)
    centre, validation = torch.randn(1, 4, dtype=torch.float64), 0.3 * torch.randn(500, 4, dtype=torch.float64)
    expected = math.sqrt(float(((validation - centre) ** 2).sum(1).mean()) / 4)
    assert fit_sigma(centre, validation) == pytest.approx(expected, rel=1e-3)


def test_metrics_fit_on_validation_and_score_test():
    torch.manual_seed(2)
    samples, validation, test = torch.rand(300, 6), torch.rand(100, 6), torch.rand(50, 6)
    metrics = parzen_metrics(samples, validation, test)
    assert metrics["parzen_sigma"] == pytest.approx(fit_sigma(samples, validation))
    scored = parzen_log_density(test, samples, metrics["parzen_sigma"])
    assert metrics["parzen_log_likelihood_nats"] == pytest.approx(float(scored.mean()))
    assert metrics["parzen_standard_error"] == pytest.approx(float(scored.std()) / math.sqrt(50))
    counts = (metrics["parzen_samples"], metrics["parzen_validation_images"], metrics["parzen_test_images"])
    assert counts == (300, 100, 50)
    assert parzen_metrics(samples, validation, 2 * test)["parzen_sigma"] == metrics["parzen_sigma"]
