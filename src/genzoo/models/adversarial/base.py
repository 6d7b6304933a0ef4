"""What every GAN in genzoo shares: two optimizers, the alternating update, deterministic sample-quality evaluation.

One training batch (Goodfellow et al. 2014, Algorithm 1 with k=1): the discriminator takes one step on a real
batch and a detached generated batch, then the generator takes one step through a frozen discriminator (its
parameters stop requiring gradients, so no discriminator weight gradient is computed or touched by the generator
loss). The losses come from :mod:`genzoo.losses`.

To add a GAN, subclass :class:`AdversarialModel` with a ``Config`` subclassing :class:`AdversarialConfig`, and define:

- ``__init__``: call ``super().__init__`` and build ``generator`` (z [B, latent_dim] -> images in [-1, 1]) and
  ``discriminator`` (images -> logits); ``normal_init`` gives DCGAN's initialization.

and may override:

- ``latent(n)``: what G is fed (InfoGAN appends its codes); ``generate`` / ``discriminate`` for networks with
  other inputs or outputs;
- ``discriminator_step`` / ``generator_step``: extra loss terms (InfoGAN's L_I), each returning "loss" plus logs;
- ``generator_parameters()``: the generator optimizer's parameter groups (InfoGAN adds Q's head);
- ``augment(images)``: what D sees of every image, real or generated;
- ``training_step`` itself, when one batch is not one D and one G update (ProGAN's growth, Puzzle-GAN).

Training, sampling and the sample-quality evaluation come with the class.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genzoo.errors import GenzooError
from genzoo.losses import ADVERSARIAL_LOSSES, discriminator_loss, generator_loss
from genzoo.models.base import GenerativeModel, Step, TrainConfig, adam

EVAL_CHUNK = 500


@dataclass
class AdversarialConfig(TrainConfig):
    latent_dim: int = 100
    lr: float = 2e-4  # both networks, unless generator_lr is set
    generator_lr: float | None = None
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "non-saturating"  # one of genzoo.losses.ADVERSARIAL_LOSSES
    eval_samples: int = 10_000  # generated images scored by evaluate (Fréchet distance is biased at small counts)
    eval_seed: int = 0  # evaluate draws its noise from this seed: the same run gives the same numbers
    inception_weights: str | None = None  # TorchScript Inception-v3 file: adds the standard FID to evaluate


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` stop requiring gradients inside the block (their previous flags are restored)."""
    parameters = [p for module in modules for p in module.parameters()]
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)


def weight_average(generator: nn.Module, decay: float) -> nn.Module | None:
    """A frozen copy of ``generator`` to hold the exponential moving average of its weights, or None if decay is 0."""
    return copy.deepcopy(generator).requires_grad_(False) if decay > 0 else None


@torch.no_grad()
def update_weight_average(
    average: nn.Module | None, current: nn.Module, decay: float, updates: int | None = None
) -> None:
    """average <- d average + (1 - d) current, parameter by parameter (Karras et al. 2018's generator average;
    Yazici et al. 2019). With ``updates`` (generator updates so far) the decay is warmed up as
    d = min(decay, (1 + updates) / (10 + updates)), so the untrained initial weights fade out within the first
    batches of a short run. Buffers (batch-norm statistics) are not averaged: a model with batch norm refreshes
    the average's own statistics with a forward pass in training mode."""
    if average is None:
        return
    if updates is not None:
        decay = min(decay, (1 + updates) / (10 + updates))
    for averaged, weight in zip(average.parameters(), current.parameters()):
        averaged.lerp_(weight, 1 - decay)


def normal_init(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN initialization (Radford et al. 2016): weights N(0, 0.02); batch-norm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, std)
        nn.init.zeros_(module.bias)


class AdversarialModel(GenerativeModel):
    """A generator G(z) in [-1, 1] and a discriminator D(x) -> logits; subclasses build ``generator`` and
    ``discriminator`` and may override ``latent`` / ``generator_step`` (InfoGAN adds its codes there)."""

    family = "adversarial"
    input_kind = "signed"
    Config = AdversarialConfig

    generator: nn.Module
    discriminator: nn.Module

    def training_only_modules(self) -> tuple[str, ...]:
        return ("discriminator",)

    def __init__(self, config: AdversarialConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        if config.loss not in ADVERSARIAL_LOSSES:
            raise GenzooError(f"unknown loss {config.loss!r}; valid: {', '.join(ADVERSARIAL_LOSSES)}")

    def latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Noise z ~ N(0, I), [n, latent_dim]."""
        return torch.randn(n, self.config.latent_dim, generator=generator).to(self._device())

    def generate(self, latent: Tensor) -> Tensor:
        return self.generator(latent).view(-1, *self.image_shape)  # [B, C, H, W] in [-1, 1]

    def discriminate(self, images: Tensor) -> Tensor:
        return self.discriminator(images).flatten()  # [B] logits

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def generator_parameters(self) -> list[dict[str, Any]]:
        """Parameter groups of the "generator" optimizer."""
        return [{"params": self.generator.parameters()}]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        return {
            "discriminator": adam(self.discriminator.parameters(), c.lr, betas),
            "generator": adam(self.generator_parameters(), c.generator_lr or c.lr, betas),
        }

    def discriminator_step(self, real: Tensor, fake: Tensor, latent: Tensor) -> dict[str, Tensor]:
        """Losses of the discriminator update (on the detached ``fake``); key "loss" is optimized."""
        loss = discriminator_loss(self.discriminate(real), self.discriminate(fake.detach()), self.config.loss)
        return {"loss": loss, "discriminator_loss": loss}

    def generator_step(self, latent: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Losses of the generator update (computed through a frozen discriminator); key "loss" is optimized."""
        with frozen(self.discriminator):
            loss = generator_loss(self.discriminate(fake), self.config.loss)
        return {"loss": loss, "generator_loss": loss}

    def augment(self, images: Tensor) -> Tensor:
        """What D sees of a training image, real or generated (differentiable, fresh randomness per call); the
        identity unless a model augments (InfoGAN's ``augment_shift``)."""
        return images

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        real = self._layout(self.augment(batch["x"]))
        latent = self.latent(len(real))
        fake = self.augment(self.generate(latent))
        discriminator_losses = self.discriminator_step(real, fake, latent)
        step.optimize(discriminator_losses.pop("loss"), "discriminator")
        generator_losses = self.generator_step(latent, fake)
        step.optimize(generator_losses.pop("loss"), "generator")
        return {k: v.detach() for k, v in {**discriminator_losses, **generator_losses}.items()}

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.generate(self.latent(n))

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """The sample-quality suite of :mod:`genzoo.metrics.sample_quality` against the test images ``x``."""
        return self.sample_quality_report(x, data)[2]

    @torch.no_grad()
    def sample_quality_report(self, x: Tensor, data: str | None) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """``eval_samples`` latents drawn from ``eval_seed``, their images in [0, 1] and the suite's report."""
        from genzoo.metrics.sample_quality import sample_quality

        data = data or getattr(self, "run_config", {}).get("data")
        if data is None:
            raise GenzooError("sample-quality metrics need the dataset name, to pick its feature net")
        latent = self.latent(self.config.eval_samples, torch.Generator().manual_seed(self.config.eval_seed))
        images = (torch.cat([self.generate(chunk) for chunk in latent.split(EVAL_CHUNK)]).float().cpu() + 1) / 2
        real = (x.float().cpu() + 1) / 2
        report = sample_quality(images, real, data, self.config.inception_weights, seed=self.config.eval_seed)
        return latent, images, report
