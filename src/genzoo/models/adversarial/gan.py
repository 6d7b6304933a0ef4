"""GAN (Goodfellow et al., NeurIPS 2014): multilayer perceptrons playing the minimax game of eq. (1).

min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]; for a fixed G the best D is p_data / (p_data + p_g) and the
game becomes 2 JSD(p_data || p_g) - log 4 (Theorem 1). Training alternates one D step and one G step
(Algorithm 1 with k=1). ``loss="minimax"`` trains G on log(1 - D(G(z))) exactly; the default
``"non-saturating"`` trains it on -log D(G(z)), the paper's own recommendation for early training.

Measure: the paper's Parzen-window log-likelihood of test images under G's samples (Sec. 5: sigma chosen on
validation images, MNIST 225 ± 2 nats), beside the feature-net suite every GAN reports.

The networks follow the paper's MNIST model: G has two ReLU layers of 1200 units; D has two maxout layers
(240 units of 5 pieces) with dropout.

Departures (measured: benchmarks/log/gan.md):
- G outputs Tanh over [-1, 1] pixels instead of a sigmoid over [0, 1] (the same function: tanh(a) = 2 sigmoid(2a)
  - 1), and Adam(2e-4, beta1 0.5) replaces SGD with momentum.
- G normalizes its two hidden layers with batch norm (Ioffe & Szegedy 2015, as DCGAN's generator does), which the
  2014 paper predates; without it G collapsed onto one digit class (``generator_batch_norm=False`` gives the
  paper's network). Log: "MLP GAN: the collapse and its fix".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.metrics.parzen import parzen_metrics
from genzoo.models.adversarial.base import AdversarialConfig, AdversarialModel
from genzoo.registry import models


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): the maximum of ``pieces`` affine maps per unit."""

    def __init__(self, inputs: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(inputs, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(-1)


def hidden_layer(inputs: int, units: int, batch_norm: bool) -> list[nn.Module]:
    """Linear -> (batch norm) -> ReLU; the linear map has no bias when batch norm's shift replaces it."""
    if batch_norm:
        return [nn.Linear(inputs, units, bias=False), nn.BatchNorm1d(units), nn.ReLU()]
    return [nn.Linear(inputs, units), nn.ReLU()]


@dataclass
class GANConfig(AdversarialConfig):
    generator_hidden: int = 1200
    discriminator_units: int = 240
    maxout_pieces: int = 5
    dropout: float = 0.5
    generator_batch_norm: bool = added_later(True, before=False)  # departure from the paper, see the module docstring


@models.register("gan")
class GAN(AdversarialModel):
    """The original fully connected GAN."""

    Config = GANConfig
    default_batches = 5000  # the budget of its zoo entry and results row
    precision = "bf16-mixed"  # faster at the same quality (benchmarks/log/gan.md, "GAN in bf16")

    def __init__(self, config: GANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        hidden, units, pieces = config.generator_hidden, config.discriminator_units, config.maxout_pieces
        self.generator = nn.Sequential(
            *hidden_layer(config.latent_dim, hidden, config.generator_batch_norm),
            *hidden_layer(hidden, hidden, config.generator_batch_norm),
            nn.Linear(hidden, self.dims),
            nn.Tanh(),
        )
        self.discriminator = nn.Sequential(
            nn.Flatten(),
            Maxout(self.dims, units, pieces),
            nn.Dropout(config.dropout),
            Maxout(units, units, pieces),
            nn.Dropout(config.dropout),
            nn.Linear(units, 1),
        )

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """The feature-net suite, and the Parzen log-likelihood of the test images' second half under a window on
        the same ``eval_samples`` samples, sigma fitted on the first half (the paper's validation images)."""
        _, images, report = self.sample_quality_report(x, data)
        real = (x.float().cpu() + 1) / 2
        half = len(real) // 2
        return {**report, **parzen_metrics(images.flatten(1), real[:half].flatten(1), real[half:].flatten(1))}
