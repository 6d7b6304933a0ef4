"""Progressive GAN (Karras, Aila, Laine & Lehtinen, "Progressive Growing of GANs", ICLR 2018).

Training starts at 4x4 and doubles the resolution up to ``resolution`` (32 by default; 64 and beyond for a user's
folder). Each new resolution first fades in (Sec. 2, Fig. 2): G's output is (1 - alpha) * upsample(toRGB of the
previous block) + alpha * toRGB(new block), D's input path mixes (1 - alpha) * fromRGB(avgpool(x)) with
alpha * new block(fromRGB(x)), and the real images D sees are blended the same way, (1 - alpha) *
upsample(avgpool(x)) + alpha * x. Then the resolution is trained stable. Both phases last ``phase_images`` images;
alpha is a pure function of the images seen, ``step.batch_index * batch size`` (per process under DDP), so a
resumed run continues a fade-in exactly where it stopped.

Networks (Table 2, narrower): G is z -> pixel norm -> dense to 4x4 -> 3x3 conv, then per resolution nearest
upsampling and two 3x3 convolutions, every conv followed by LeakyReLU(0.2) and pixel norm (Sec. 4.2), and a 1x1
toRGB with a linear output. D mirrors it with 1x1 fromRGB, blocks of two 3x3 convolutions and average pooling, and
ends with minibatch standard deviation (Sec. 3), a 3x3 conv, a 4x4 dense layer and a linear score. Every layer
uses the equalized learning rate (Sec. 4.1). Loss: WGAN-GP (lambda 10) plus the drift term
epsilon_drift * E[D(x)^2], epsilon_drift = 0.001 (Appendix A.1); one critic step per generator step; Adam
(lr 1e-3, beta1 0, beta2 0.99). Samples come from an exponential moving average of G's weights.

Departures (measured: benchmarks/log/progressive-puzzle.md):
- CPU budget: channels min(``max_channels`` = 32, 512 / resolution) instead of min(512, 16384 / resolution), a
  128-d latent instead of 512-d, phases of ``phase_images`` images instead of 800k.
- The generator learns 4x slower than the critic (Adam lr 2.5e-4 vs 1e-3; the paper: 1e-3 for both, here the two
  time-scale rule of Heusel et al. 2017): equal rates collapsed the samples to one or two shapes by the 16x16 stage.
- The weight average decays by 0.99 per batch instead of 0.999, whose ~1,000-batch memory outlasts our short
  phases (it still held the newest block's untrained weights when sampled).

28x28 data (MNIST, Fashion-MNIST) is padded with 2 pixels of background on every side to 32x32: exact, and undone
by cropping the generated 32x32 images back to 28x28, so samples, the run's image shape and the metrics match the
data (bilinear resizing would blur the real images instead).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.errors import GenzooError
from genzoo.losses import AdversarialLossName, discriminator_loss, generator_loss, gradient_penalty
from genzoo.models.adversarial.base import (
    AdversarialConfig,
    AdversarialModel,
    frozen,
    update_weight_average,
    weight_average,
)
from genzoo.models.base import Step
from genzoo.nn.progressive import (
    LEAKY_SLOPE,
    DiscriminatorBlock,
    EqualizedConv2d,
    EqualizedLinear,
    GeneratorBlock,
    MinibatchStdDev,
    PixelNorm,
    downsample,
    fade_in,
)
from genzoo.registry import models

FIRST_RESOLUTION = 4
CHANNEL_BUDGET = 512  # channels at resolution r: min(max_channels, CHANNEL_BUDGET / r)
DENSE_GAIN = math.sqrt(2.0) / 4  # the paper's latent -> 4x4 dense layer (its code's gain for that layer)


@dataclass
class ProGANConfig(AdversarialConfig):
    resolution: int = 32  # final resolution, a power of two >= 8 and >= the data's size
    latent_dim: int = 128
    max_channels: int = 32
    phase_images: int = 10000  # images per fade-in phase and per stable phase
    loss: AdversarialLossName = "wasserstein"
    gradient_penalty_weight: float = 10.0
    drift_weight: float = 0.001
    lr: float = 1e-3
    generator_lr: float | None = 2.5e-4  # two time-scale update rule: see the departures in the module docstring
    beta1: float = 0.0
    beta2: float = 0.99
    ema_decay: float = 0.99  # 0 samples from the trained generator itself; see the departures
    minibatch_group: int = 4


def growth(images_seen: int, phase_images: int, levels: int) -> tuple[int, float]:
    """(level, alpha) after ``images_seen`` images: level 0 is 4x4, stable for one phase; each further level fades
    in over one phase (alpha 0 -> 1) and is then stable for one phase; the last level stays."""
    if images_seen < phase_images or levels == 1:
        return 0, 1.0
    level, into = divmod(images_seen - phase_images, 2 * phase_images)
    level += 1
    if level >= levels:
        return levels - 1, 1.0
    return level, min(1.0, into / phase_images)


def channels_at(resolution: int, max_channels: int) -> int:
    return max(1, min(max_channels, CHANNEL_BUDGET // resolution))


class GrowingGenerator(nn.Module):
    """z [B, latent] -> images [B, C, 4 * 2^level, 4 * 2^level] (linear output, roughly [-1, 1])."""

    def __init__(self, latent_dim: int, image_channels: int, levels: int, max_channels: int) -> None:
        super().__init__()
        widths = [channels_at(FIRST_RESOLUTION * 2**level, max_channels) for level in range(levels)]
        self.first_width = widths[0]
        self.dense = EqualizedLinear(latent_dim, widths[0] * FIRST_RESOLUTION**2, gain=DENSE_GAIN)
        self.first = nn.Sequential(
            nn.LeakyReLU(LEAKY_SLOPE),
            PixelNorm(),
            EqualizedConv2d(widths[0], widths[0], 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            PixelNorm(),
        )
        self.blocks = nn.ModuleList(GeneratorBlock(widths[i - 1], widths[i]) for i in range(1, levels))
        self.to_rgb = nn.ModuleList(EqualizedConv2d(width, image_channels, 1, gain=1.0) for width in widths)
        self.normalize_latent = PixelNorm()

    def forward(self, latent: Tensor, level: int, alpha: float) -> Tensor:
        x = self.dense(self.normalize_latent(latent)).view(len(latent), self.first_width, 4, 4)
        x = self.first(x)
        previous = x
        for block in self.blocks[:level]:
            previous, x = x, block(x)
        image = self.to_rgb[level](x)
        if level > 0 and alpha < 1:
            image = fade_in(self.to_rgb[level - 1](previous), image, alpha)
        return image


class GrowingDiscriminator(nn.Module):
    """Images [B, C, 4 * 2^level, ...] -> critic scores [B]."""

    def __init__(self, image_channels: int, levels: int, max_channels: int, minibatch_group: int) -> None:
        super().__init__()
        widths = [channels_at(FIRST_RESOLUTION * 2**level, max_channels) for level in range(levels)]
        self.from_rgb = nn.ModuleList(EqualizedConv2d(image_channels, width, 1) for width in widths)
        # blocks[i - 1] takes level i's features down to level i - 1
        self.blocks = nn.ModuleList(DiscriminatorBlock(widths[i], widths[i - 1]) for i in range(1, levels))
        self.last = nn.Sequential(
            MinibatchStdDev(minibatch_group),
            EqualizedConv2d(widths[0] + 1, widths[0], 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Flatten(),
            EqualizedLinear(widths[0] * FIRST_RESOLUTION**2, widths[0]),
            nn.LeakyReLU(LEAKY_SLOPE),
            EqualizedLinear(widths[0], 1, gain=1.0),
        )

    def forward(self, images: Tensor, level: int, alpha: float) -> Tensor:
        x = F.leaky_relu(self.from_rgb[level](images), LEAKY_SLOPE)
        if level > 0:
            x = self.blocks[level - 1](x)
            if alpha < 1:
                previous = F.leaky_relu(self.from_rgb[level - 1](downsample(images, 2)), LEAKY_SLOPE)
                x = fade_in(previous, x, alpha)
            for block in reversed(self.blocks[: level - 1]):
                x = block(x)
        return self.last(x).flatten()


@models.register("progan")
class ProGAN(AdversarialModel):
    """Progressive growing GAN with WGAN-GP + drift; see the module docstring."""

    Config = ProGANConfig
    default_batches = 2600  # the budget of its zoo entry and results row

    def __init__(self, config: ProGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = self.image_shape
        size = config.resolution
        if size < 8 or size & (size - 1):
            raise GenzooError(f"progan resolution must be a power of two of at least 8, got {size}")
        if height > size or width > size:
            raise GenzooError(f"progan resolution {size} is smaller than the {height}x{width} images; set resolution")
        if config.phase_images < 1:
            raise GenzooError("progan phase_images must be at least 1")
        self.levels = int(math.log2(size // FIRST_RESOLUTION)) + 1
        self.generator = GrowingGenerator(config.latent_dim, channels, self.levels, config.max_channels)
        self.discriminator = GrowingDiscriminator(channels, self.levels, config.max_channels, config.minibatch_group)
        self.generator_ema = weight_average(self.generator, config.ema_decay)
        # images the networks have been trained on: sampling after a stopped run uses the stage it reached
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        self.padding = ((size - height) // 2, (size - width) // 2)

    def training_only_modules(self) -> tuple[str, ...]:
        return ("discriminator",) if self.generator_ema is None else ("discriminator", "generator")

    def stage(self, images_seen: int | None = None) -> tuple[int, float]:
        """(level, alpha) of the growth schedule after ``images_seen`` images (default: those trained on)."""
        seen = int(self.images_seen) if images_seen is None else images_seen
        return growth(seen, self.config.phase_images, self.levels)

    def pad(self, images: Tensor) -> Tensor:
        """Data-size images -> ``resolution`` images, background (-1) around them."""
        top, left = self.padding
        size = self.config.resolution
        bottom, right = size - images.shape[-2] - top, size - images.shape[-1] - left
        return F.pad(images, (left, right, top, bottom), value=-1.0)

    def crop(self, images: Tensor) -> Tensor:
        top, left = self.padding
        return images[..., top : top + self.image_shape[1], left : left + self.image_shape[2]]

    def reals_at(self, images: Tensor, level: int, alpha: float) -> Tensor:
        """Full-resolution reals shown at ``level``, blended with their half-resolution version during a fade-in."""
        shown = downsample(images, 2 ** (self.levels - 1 - level))
        if level > 0 and alpha < 1:
            shown = fade_in(downsample(shown, 2), shown, alpha)
        return shown

    def generate(self, latent: Tensor) -> Tensor:
        """Images at the data's shape in [-1, 1] from the stage reached (nearest-upsampled if not yet full size)."""
        level, alpha = self.stage()
        generator = self.generator_ema if self.generator_ema is not None else self.generator
        images = generator(latent, level, alpha)
        images = F.interpolate(images, size=(self.config.resolution,) * 2, mode="nearest")
        return self.crop(images).clamp(-1, 1)

    @torch.no_grad()
    def generate_at(self, latent: Tensor, level: int) -> Tensor:
        """Images in [-1, 1] at the resolution of ``level`` (4 * 2^level, padding included) from the sampling
        generator: what its toRGB layer of that level draws now (the stage's fade-in alpha at the level reached,
        fully faded in below it). Levels beyond the stage reached were never trained and are refused."""
        reached, alpha = self.stage()
        if not 0 <= level <= reached:
            raise GenzooError(f"progan has grown through levels 0..{reached} (4x4 to {4 * 2**reached}), not {level}")
        generator = self.generator_ema if self.generator_ema is not None else self.generator
        return generator(latent, level, alpha if level == reached else 1.0).clamp(-1, 1)

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        c = self.config
        real_full = self.pad(batch["x"])
        images_seen = step.batch_index * len(real_full)
        level, alpha = self.stage(images_seen)
        real = self.reals_at(real_full, level, alpha)
        latent = self.latent(len(real))
        fake = self.generator(latent, level, alpha)

        critic = functools.partial(self.discriminator, level=level, alpha=alpha)
        real_scores, fake_scores = critic(real), critic(fake.detach())
        wasserstein = discriminator_loss(real_scores, fake_scores, c.loss)
        penalty = gradient_penalty(critic, real, fake)
        drift = real_scores.square().mean()
        d_loss = wasserstein + c.gradient_penalty_weight * penalty + c.drift_weight * drift
        step.optimize(d_loss, "discriminator")

        with frozen(self.discriminator):
            g_loss = generator_loss(critic(fake), c.loss)
        step.optimize(g_loss, "generator")
        update_weight_average(self.generator_ema, self.generator, c.ema_decay)
        self.images_seen.fill_(images_seen + len(real_full))
        return {
            "discriminator_loss": d_loss.detach(),
            "generator_loss": g_loss.detach(),
            "gradient_penalty": penalty.detach(),
            "resolution": torch.tensor(float(real.shape[-1])),
            "alpha": torch.tensor(alpha),
        }
