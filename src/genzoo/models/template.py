"""Template for a new model: the smallest complete one, a mixture of K product-of-Bernoulli images.

Copy this file into its family's folder (``models/<family>/``), rename it, put ``@models.register("name")`` above
the model class (the template stays unregistered, so ``genzoo list`` does not offer it) and replace the objective.
A model file opens as this one does: the paper, the objective in its symbols, the architecture, and "Departures:"
with a pointer into benchmarks/log/ for each.

Mixture of Bernoullis (Bishop, "Pattern Recognition and Machine Learning", 2006, section 9.3.3). Objective, the
exact log-likelihood of a binary image x with D pixels, maximized by gradient ascent:

    log p(x) = log sum_k pi_k prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d)

Architecture: mixture weights pi = softmax(``mixture_logits``) [K] and pixel means mu = sigmoid(``pixel_logits``)
[K, D].

Departures: none (the book fits it by EM; any maximizer of the likelihood is the same model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.models.base import LikelihoodModel, TrainConfig


@dataclass
class TemplateConfig(TrainConfig):
    components: int = 10  # K

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.components < 1:
            raise ValueError(f"components must be at least 1, got {self.components}")


class MixtureOfBernoullis(LikelihoodModel):
    """K images of pixel probabilities and their mixture weights. ``LikelihoodModel`` supplies the training step
    (mean NLL, one Adam) and the evaluation (test NLL in nats and bits/dim)."""

    Config = TemplateConfig
    input_kind = "binary"

    def __init__(self, config: TemplateConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.mixture_logits = nn.Parameter(torch.zeros(config.components))
        self.pixel_logits = nn.Parameter(0.1 * torch.randn(config.components, self.dims))

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.flatten(1)  # [B, D]
        log_pi = F.log_softmax(self.mixture_logits, 0)  # [K]
        # log prod_d mu_kd^x_d (1 - mu_kd)^(1 - x_d) = sum_d x_d l_kd - softplus(l_kd), with l = logit(mu)
        log_component = x @ self.pixel_logits.T - F.softplus(self.pixel_logits).sum(1)  # [B, K]
        return torch.logsumexp(log_pi + log_component, dim=1)  # [B]

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        component = torch.multinomial(F.softmax(self.mixture_logits, 0), n, replacement=True)  # [n]
        return torch.bernoulli(torch.sigmoid(self.pixel_logits[component])).view(n, *self.image_shape)
