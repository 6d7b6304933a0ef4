"""Adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey, ICLR workshop 2016).

An autoencoder whose aggregate posterior q(z) = E_x[q(z | x)] is matched to a prior p(z) by a discriminator on
codes instead of a KL term (Sec. 2). Each batch runs the paper's two phases:

1. reconstruction: encoder and decoder minimize -log p(x | z) with z from q(z | x) ("autoencoder" optimizer);
2. regularization: the discriminator D(z) learns to tell prior codes (label 1) from encoded codes (label 0)
   ("discriminator"), then the encoder, as generator, learns to make D call its codes prior codes
   ("generator"; the non-saturating form -log D(q codes) of Goodfellow et al. 2014).

The encoder is deterministic, z = f(x), or Gaussian, z = mu(x) + sigma(x) * eps (Sec. 2.1). Priors: N(0, I), or
the paper's mixture of 10 two-dimensional Gaussians (Fig. 4): elongated components spaced around a circle, applied
to every consecutive pair of latent dimensions. With ``supervised=true`` (Sec. 2.3) the discriminator also sees
the one-hot label and the prior code of an image of class y comes from component y, so at sampling time
``--label y`` draws class y.

The decoder's pixel likelihood is shared with the VAE (Bernoulli for binary data). Departures: Adam instead of
SGD with momentum; nets narrower than the paper's two layers of 1000 units (``hidden``). The paper scores AAEs
with a Parzen window on samples; ``evaluate`` does the same (see :mod:`genzoo.metrics.parzen`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.errors import GenzooError
from genzoo.metrics.parzen import parzen_metrics
from genzoo.models.base import Step, TrainConfig, adam, seeded_evaluation
from genzoo.models.latent.base import (
    ARCHITECTURES,
    LIKELIHOODS,
    LatentModel,
    network_input,
)
from genzoo.registry import models
from genzoo.viz import to_unit_range

MIXTURE_RADIUS = 2.0  # component centres on a circle of this radius (in each 2-D pair of latent dimensions)
MIXTURE_RADIAL_STD = 0.5  # components elongated along the radius, as in the paper's Fig. 4
MIXTURE_TANGENTIAL_STD = 0.1


def mixture_codes(labels: Tensor, components: int, latent_dim: int) -> Tensor:
    """Codes [B, Z] from the 2-D mixture component ``labels`` [B] in every pair of dimensions."""
    pairs = latent_dim // 2
    angle = (2 * math.pi / components) * labels.float()[:, None]  # [B, 1]
    radial = MIXTURE_RADIUS + MIXTURE_RADIAL_STD * torch.randn(len(labels), pairs, device=labels.device)
    tangential = MIXTURE_TANGENTIAL_STD * torch.randn(len(labels), pairs, device=labels.device)
    x = radial * torch.cos(angle) - tangential * torch.sin(angle)
    y = radial * torch.sin(angle) + tangential * torch.cos(angle)
    return torch.stack([x, y], -1).flatten(1)  # [B, 2 * pairs]: (x1, y1, x2, y2, ...)


@dataclass
class AAEConfig(TrainConfig):
    latent: int = 8
    encoder: str = "deterministic"  # deterministic | gaussian
    prior: str = "gaussian"  # gaussian | mixture
    components: int = 10  # mixture components (classes, when supervised)
    supervised: bool = False  # label-conditioned prior: the code of class y follows component y
    architecture: str = "mlp"  # mlp | conv
    hidden: int = 512
    layers: int = 2
    discriminator_hidden: int = 256
    likelihood: str = "bernoulli"  # bernoulli | logistic | gaussian
    levels: int = 256
    lr: float = 1e-3  # reconstruction phase
    adversarial_lr: float = 2e-4  # discriminator and generator (regularization phase)
    parzen_samples: int = 10_000  # samples whose Parzen window evaluate() scores
    parzen_validation: int = 1_000  # test images used to fit the Parzen bandwidth (the rest are scored)

    def __post_init__(self) -> None:
        for value, valid, key in (
            (self.encoder, ("deterministic", "gaussian"), "encoder"),
            (self.prior, ("gaussian", "mixture"), "prior"),
            (self.architecture, ARCHITECTURES[:2], "architecture"),
            (self.likelihood, LIKELIHOODS, "likelihood"),
        ):
            if value not in valid:
                raise ValueError(f"{key} must be one of {', '.join(valid)}, got {value!r}")
        if self.prior == "mixture" and self.latent % 2:
            raise ValueError("the mixture prior needs an even latent size (it lives in pairs of dimensions)")
        if self.supervised and self.prior != "mixture":
            raise ValueError("supervised=true needs prior=mixture (one component per class)")


@models.register("aae")
class AAE(LatentModel):
    """Adversarial autoencoder with a latent discriminator; three optimizers, one per phase."""

    Config = AAEConfig
    default_batches = 5000  # the budget of its zoo entry and results row

    def __init__(self, config: AAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.build_networks(config.latent * (2 if config.encoder == "gaussian" else 1))
        label_inputs = config.components if config.supervised else 0
        self.discriminator = nn.Sequential(
            nn.Linear(config.latent + label_inputs, config.discriminator_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.discriminator_hidden, config.discriminator_hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.discriminator_hidden, 1),
        )

    def training_only_modules(self) -> tuple[str, ...]:
        return ("discriminator",)  # the adversary on codes; sampling and evaluation use the prior and the decoder

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters(), *self.pixels.parameters()]
        betas = (0.5, 0.999)  # the usual GAN setting for the adversarial pair
        return {
            "autoencoder": adam(autoencoder, self.config.lr),
            "discriminator": adam(self.discriminator.parameters(), self.config.adversarial_lr, betas),
            "generator": adam(self.encoder.parameters(), self.config.adversarial_lr, betas),
        }

    def encode_sample(self, x: Tensor) -> Tensor:
        """A code z ~ q(z | x) [B, Z] (the deterministic encoder's f(x))."""
        out = self.encoder(network_input(x, self.input_kind, self.config.levels))
        if self.config.encoder == "deterministic":
            return out
        mean, log_var = out.chunk(2, dim=-1)
        return mean + torch.exp(0.5 * log_var.clamp(-15.0, 15.0)) * torch.randn_like(mean)

    def encode(self, x: Tensor) -> Tensor:
        out = self.encoder(network_input(x, self.input_kind, self.config.levels))
        return out if self.config.encoder == "deterministic" else out.chunk(2, dim=-1)[0]

    def sample_prior(self, n: int, labels: Tensor | None = None) -> Tensor:
        """Prior codes [n, Z]; for the mixture, ``labels`` [n] pick the components (uniform when None)."""
        device = self._device()
        if self.config.prior == "gaussian":
            return torch.randn(n, self.latent_dim, device=device)
        if labels is None:
            labels = torch.randint(self.config.components, (n,), device=device)
        return mixture_codes(labels.to(device), self.config.components, self.latent_dim)

    def _discriminate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        if self.config.supervised:
            z = torch.cat([z, F.one_hot(labels, self.config.components).float()], 1)
        return self.discriminator(z)[:, 0]  # logits [B]

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        x, labels = batch["x"], batch.get("y")
        if self.input_kind == "levels" and int(x.max()) >= self.config.levels:
            self.check_levels(int(x.max()) + 1)
        if self.config.supervised:
            if labels is None:
                raise GenzooError("supervised=true needs a dataset with labels")
            if int(labels.max()) >= self.config.components:
                raise GenzooError(f"labels go up to {int(labels.max())} but components={self.config.components}")

        reconstruction = -self.pixels.log_prob(x, self.decoder(self.encode_sample(x))).mean()
        step.optimize(reconstruction, "autoencoder")

        prior_codes = self.sample_prior(len(x), labels if self.config.supervised else None)
        encoded = self.encode_sample(x)
        real, fake = self._discriminate(prior_codes, labels), self._discriminate(encoded.detach(), labels)
        discriminator_loss = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        step.optimize(discriminator_loss, "discriminator")

        fooled = self._discriminate(encoded, labels)
        generator_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        step.optimize(generator_loss, "generator")
        return {
            "reconstruction": reconstruction.detach(),
            "discriminator": discriminator_loss.detach(),
            "generator": generator_loss.detach(),
        }

    @torch.no_grad()
    def sample(self, n: int, pixels: str = "mean", label: int = -1) -> Tensor:
        """``n`` images from prior codes; ``label`` >= 0 draws that mixture component (the class, if supervised)."""
        labels = None
        if label >= 0:
            if self.config.prior != "mixture" or label >= self.config.components:
                raise GenzooError(f"label needs prior=mixture and 0 <= label < {self.config.components}")
            labels = torch.full((n,), label, dtype=torch.long)
        return self.images_from_codes(self.sample_prior(n, labels), pixels)

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None, batch_size: int = 500
    ) -> dict[str, float]:
        """Test reconstruction NLL (nats per image) and the Parzen-window log-likelihood of samples, its sigma
        fitted on the first ``parzen_validation`` test images and the rest scored, in [0, 1] pixel space."""
        self.check_levels(levels)
        with seeded_evaluation(x.device):
            reconstruction = sum(
                float(-self.pixels.log_prob(chunk, self.decoder(self.encode(chunk))).sum())
                for chunk in x.split(batch_size)
            )
            samples = torch.cat(
                [
                    self.sample(min(batch_size, self.config.parzen_samples - start))
                    for start in range(0, self.config.parzen_samples, batch_size)
                ]
            )
        out: dict[str, float] = {"reconstruction_nats": reconstruction / len(x), "test_images": len(x)}
        validation_count = min(self.config.parzen_validation, len(x) // 2)
        unit = to_unit_range(x, self.input_kind, levels)
        out.update(
            parzen_metrics(
                to_unit_range(samples, self.input_kind, levels), unit[:validation_count], unit[validation_count:]
            )
        )
        return out
