"""NLL bookkeeping: nats per image, bits per dimension and the dequantization offset, checked on closed forms."""

import math

import pytest
import torch

from genzoo.metrics.likelihood import nll_metrics


def test_uniform_density_on_dequantized_bytes_is_eight_bits_per_dim():
    x = torch.rand(100, 1, 4, 4)
    metrics = nll_metrics(lambda batch: torch.zeros(len(batch)), x, "dequantized", levels=256, batch_size=7)
    assert metrics["density_nll_nats"] == 0
    assert metrics["nll_nats"] == pytest.approx(16 * math.log(256))
    assert metrics["bits_per_dim"] == pytest.approx(8.0)


def test_fair_coins_are_one_bit_per_dim():
    x = torch.bernoulli(torch.full((50, 1, 2, 5), 0.5))
    metrics = nll_metrics(lambda batch: torch.full((len(batch),), 10 * math.log(0.5)), x, "binary", 2, 8)
    assert metrics["nll_nats"] == pytest.approx(10 * math.log(2))
    assert metrics["bits_per_dim"] == pytest.approx(1.0)
    assert metrics["test_images"] == 50
