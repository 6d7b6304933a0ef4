"""Variational autoencoder (Kingma & Welling, ICLR 2014) with the importance-weighted bound (Burda et al. 2016).

Encoder q(z | x) = N(mu(x), diag(sigma^2(x))), prior p(z) = N(0, I), decoder p(x | z) one of the pixel
likelihoods of :mod:`genzoo.models.latent.base` (Bernoulli for binary images, discretized logistic for grey levels,
Gaussian for dequantized data). Training maximizes, per image,

    ELBO = E_q[log p(x | z)] - KL(q(z | x) || p(z))                     (K&W eq. 10, one reparameterized sample),
    KL = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)            (K&W appendix B, closed form),

or, with ``objective=iwae``, the k-sample bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)] (Burda eq. 8).
Both terms of the ELBO are logged. ``log_prob(x, k)`` is the importance-weighted estimate L_k of log p(x): a
lower bound in expectation that tightens with k (default ``eval_k`` = 500), not the exact likelihood.

Departures: Adam instead of Adagrad/SGD; the MLP nets use Burda et al.'s two tanh layers of 200 units by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genzoo.metrics.iwae import importance_bounds, iwae_objective
from genzoo.models.base import Step, TrainConfig, seeded_evaluation
from genzoo.models.latent.base import (
    ARCHITECTURES,
    LIKELIHOODS,
    LatentModel,
    network_input,
)
from genzoo.registry import models

OBJECTIVES = ("elbo", "iwae")


def gaussian_kl(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, diag(exp(log_var))) || N(0, I)) in closed form, summed over the last axis."""
    return 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(-1)


def diagonal_gaussian_log_prob(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(log_var))) summed over the last axis."""
    return -0.5 * (((z - mean) ** 2) * torch.exp(-log_var) + log_var + math.log(2 * math.pi)).sum(-1)


@dataclass
class VAEConfig(TrainConfig):
    latent: int = 50
    architecture: str = "mlp"  # mlp | conv | linear
    hidden: int = 200
    layers: int = 2  # hidden layers of the MLP encoder and decoder
    likelihood: str = "bernoulli"  # bernoulli | logistic | gaussian
    levels: int = 256  # grey levels of the data (logistic likelihood)
    objective: str = "elbo"  # elbo | iwae
    k: int = 5  # importance samples of the IWAE objective
    eval_k: int = 500  # importance samples of log_prob / evaluate
    lr: float = 1e-3

    def __post_init__(self) -> None:
        for value, valid, key in (
            (self.architecture, ARCHITECTURES, "architecture"),
            (self.likelihood, LIKELIHOODS, "likelihood"),
            (self.objective, OBJECTIVES, "objective"),
        ):
            if value not in valid:
                raise ValueError(f"{key} must be one of {', '.join(valid)}, got {value!r}")
        if self.latent < 1 or self.k < 1 or self.eval_k < 1:
            raise ValueError("latent, k and eval_k must be at least 1")


@models.register("vae")
class VAE(LatentModel):
    """Gaussian-latent VAE; ``log_prob`` is the IWAE estimate with ``eval_k`` samples."""

    Config = VAEConfig

    def __init__(self, config: VAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.build_networks(2 * config.latent)  # the encoder gives mean and log-variance

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance [B, Z] of q(z | x)."""
        mean, log_var = self.encoder(network_input(x, self.input_kind, self.config.levels)).chunk(2, dim=-1)
        return mean, log_var.clamp(-15.0, 15.0)

    def log_weights(self, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """For k reparameterized z ~ q(z | x): log p(x | z) [k, B], log p(z) - log q(z | x) [k, B], and the KL [B]."""
        mean, log_var = self.posterior(x)
        noise = torch.randn(k, *mean.shape, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * log_var) * noise  # [k, B, Z]
        params = self.decoder(z.flatten(0, 1))  # [k*B, P*C, H, W]
        log_likelihood = self.pixels.log_prob(x.repeat(k, *[1] * (x.dim() - 1)), params).view(k, -1)
        log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        return log_likelihood, log_prior - diagonal_gaussian_log_prob(z, mean, log_var), gaussian_kl(mean, log_var)

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        x = batch["x"]
        if self.input_kind == "levels" and int(x.max()) >= self.config.levels:
            self.check_levels(int(x.max()) + 1)
        if self.config.objective == "elbo":
            log_likelihood, _, kl = self.log_weights(x, 1)
            reconstruction = -log_likelihood[0]
            loss = (reconstruction + kl).mean()
        else:
            log_likelihood, log_ratio, kl = self.log_weights(x, self.config.k)
            loss = -iwae_objective(log_likelihood + log_ratio).mean()
            reconstruction = -log_likelihood.mean(0)
        step.optimize(loss)
        return {"loss": loss.detach(), "reconstruction": reconstruction.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def bounds(self, x: Tensor, k: int | None = None, chunk: int | None = None) -> tuple[Tensor, Tensor]:
        """(ELBO, L_k) estimates [B] from the same k importance samples per image."""
        k = k or self.config.eval_k
        chunk = chunk or max(1, min(k, 20_000 // max(1, len(x))))  # about 20k decoder passes at once

        def weights(images: Tensor, n: int) -> Tensor:
            log_likelihood, log_ratio, _ = self.log_weights(images, n)
            return log_likelihood + log_ratio

        return importance_bounds(weights, x, k, chunk)

    @torch.no_grad()
    def log_prob(self, x: Tensor, k: int | None = None) -> Tensor:
        """IWAE estimate L_k of log p(x) in nats [B] (k defaults to ``eval_k``); for ``gaussian`` a density."""
        return self.bounds(x, k)[1].float()

    @torch.no_grad()
    def evaluate(
        self,
        x: Tensor,
        labels: Tensor | None,
        levels: int,
        data: str | None = None,
        batch_size: int = 100,
        k: int | None = None,
    ) -> dict[str, float]:
        """Test ELBO and IWAE NLL in nats per image and bits/dim (discrete data: dequantized densities get
        + D log L, as in :func:`genzoo.metrics.likelihood.nll_metrics`), plus the mean KL term."""
        self.check_levels(levels)
        k = k or self.config.eval_k
        elbo_sum = iwae_sum = kl_sum = 0.0
        with seeded_evaluation(x.device):
            for chunk in x.split(batch_size):
                elbo, iwae = self.bounds(chunk, k)
                elbo_sum, iwae_sum = elbo_sum + float(elbo.sum()), iwae_sum + float(iwae.sum())
                kl_sum += float(gaussian_kl(*self.posterior(chunk)).sum())
        dims, count = self.dims, len(x)
        offset = dims * math.log(levels) if self.input_kind == "dequantized" else 0.0
        nll, elbo_nll = -iwae_sum / count + offset, -elbo_sum / count + offset
        return {
            "nll_nats": nll,
            "bits_per_dim": nll / (dims * math.log(2)),
            "elbo_nll_nats": elbo_nll,
            "elbo_bits_per_dim": elbo_nll / (dims * math.log(2)),
            "kl_nats": kl_sum / count,
            "iwae_k": k,
            "test_images": count,
        }

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def sample_prior(self, n: int) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self._device())
