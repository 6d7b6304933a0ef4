"""Adversarial losses, written once for every GAN in genzoo.

A discriminator (or critic) outputs raw scores ("logits") of any shape — one per image, or one per patch for a
PatchGAN — and every loss is averaged over all of them. With D(x) = sigmoid(logit):

- ``minimax`` (Goodfellow et al. 2014, eq. 1): D minimizes -log D(x) - log(1 - D(G(z))); G minimizes
  log(1 - D(G(z))). At the optimal discriminator the D loss equals log 4 - 2 JSD(p_data || p_g).
- ``non-saturating`` (same paper, section 3): the same D loss; G minimizes -log D(G(z)), whose gradient does not
  vanish when D confidently rejects the samples early in training.
- ``least-squares`` (Mao et al. 2017, eq. 2 with a=0, b=c=1): D minimizes (D(x)-1)^2/2 + D(G(z))^2/2 on raw
  scores; G minimizes (D(G(z))-1)^2/2.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimizes relu(1 - D(x)) + relu(1 + D(G(z))); G minimizes
  -D(G(z)).
- ``wasserstein`` (Arjovsky et al. 2017): the critic minimizes D(G(z)) - D(x); G minimizes -D(G(z)). Pair it with
  :func:`gradient_penalty` (Gulrajani et al. 2017, eq. 3) for WGAN-GP.

Binary cross-entropies go through ``softplus`` (log(1 + e^x)), which is exact and stable for any logit.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

AdversarialLossName = Literal["minimax", "non-saturating", "least-squares", "hinge", "wasserstein"]
ADVERSARIAL_LOSSES: tuple[str, ...] = get_args(AdversarialLossName)


def _check(name: str) -> None:
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"unknown adversarial loss {name!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, loss: AdversarialLossName) -> Tensor:
    """The discriminator's (critic's) loss on scores of real and generated data; scalar."""
    _check(loss)
    if loss in ("minimax", "non-saturating"):
        # -log sigmoid(r) = softplus(-r);  -log(1 - sigmoid(f)) = softplus(f)
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "least-squares":
        return 0.5 * ((real_logits - 1) ** 2).mean() + 0.5 * (fake_logits**2).mean()
    if loss == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def generator_loss(fake_logits: Tensor, loss: AdversarialLossName) -> Tensor:
    """The generator's loss on the discriminator's scores of generated data; scalar."""
    _check(loss)
    if loss == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(f))
    if loss == "non-saturating":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(f)
    if loss == "least-squares":
        return 0.5 * ((fake_logits - 1) ** 2).mean()
    return -fake_logits.mean()


def gradient_penalty(critic: torch.nn.Module, real: Tensor, fake: Tensor, target_norm: float = 1.0) -> Tensor:
    """WGAN-GP: E[(||grad_x critic(x_hat)|| - target_norm)^2] on random interpolates of real and fake; scalar.

    Built with ``create_graph=True`` so the penalty trains the critic; multiply by lambda (10 in the paper).
    ``fake`` is detached: the penalty is a critic term only.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((gradients.flatten(1).norm(dim=1) - target_norm) ** 2).mean()
