"""DCGAN (Radford, Metz & Chintala, ICLR 2016).

The paper's architecture guidelines (Sec. 3): no pooling — strided convolutions in D, fractionally-strided
(transposed) convolutions in G; batch norm in both, except G's output and D's input layers; ReLU in G with a Tanh
output; LeakyReLU(0.2) in D; weights from N(0, 0.02); Adam(lr 2e-4, beta1 0.5); the non-saturating loss.

Sizes: G projects z to a ``base`` x ``base`` map (7 for 28x28 images, 4 for 8/16/32/64/... ) and doubles it up to
the image size, halving the channels each time (``width`` channels before the output layer); D mirrors it and ends
with a ``base`` x ``base`` convolution to one logit. Departures: the 28x28 variant starts from 7x7 (the paper's
models start from 4x4 for 64x64 images); the first layer is a ``base`` x ``base`` transposed convolution of z,
the paper's "project and reshape", computed as the matrix multiply it is (:class:`Projection`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genzoo.errors import GenzooError
from genzoo.models.adversarial.base import AdversarialConfig, AdversarialModel, normal_init
from genzoo.registry import models


def base_and_doublings(size: int) -> tuple[int, int]:
    """(base, k): size = base * 2^k with base <= 7 (28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4))."""
    base, k = size, 0
    while base > 7 and base % 2 == 0:
        base, k = base // 2, k + 1
    if base > 7 or k == 0:
        raise GenzooError(f"DCGAN needs an image size of 4..7 times a power of two, got {size}")
    return base, k


class Projection(nn.ConvTranspose2d):
    """G's first layer: z [B, latent, 1, 1] -> [B, C, k, k], a k x k transposed convolution of a 1x1 input, which is
    the paper's "project and reshape": one matrix multiply. Computed as that multiply because oneDNN's transposed
    convolution kernel runs it at a few percent of the machine's peak (benchmarks/log/speed.md, "Every model, one
    table"). Parameters, their layout and initialization are the transposed convolution's, so checkpoints are the
    same either way."""

    def __init__(self, latent_dim: int, channels: int, size: int) -> None:
        super().__init__(latent_dim, channels, size, 1, 0, bias=False)

    def forward(self, latent: Tensor) -> Tensor:
        if self.weight.is_contiguous(memory_format=torch.channels_last):  # multiply in the weight's own layout
            out = latent.flatten(1) @ self.weight.permute(0, 2, 3, 1).flatten(1)  # [B, k * k * C]
            return out.view(-1, *self.kernel_size, self.out_channels).permute(0, 3, 1, 2)  # channels_last
        out = latent.flatten(1) @ self.weight.flatten(1)  # [B, C * k * k]
        return out.view(-1, self.out_channels, *self.kernel_size)


def dcgan_generator(latent_dim: int, image_shape: tuple[int, int, int], width: int) -> nn.Sequential:
    channels, size, _ = image_shape
    base, k = base_and_doublings(size)
    hidden = width * 2 ** (k - 1)
    layers: list[nn.Module] = [
        nn.Unflatten(1, (latent_dim, 1, 1)),
        Projection(latent_dim, hidden, base),
        nn.BatchNorm2d(hidden),
        nn.ReLU(True),
    ]
    for _ in range(k - 1):
        layers += [nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(hidden // 2)]
        layers.append(nn.ReLU(True))
        hidden //= 2
    layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan_discriminator(image_shape: tuple[int, int, int], width: int) -> nn.Sequential:
    channels, size, _ = image_shape
    base, k = base_and_doublings(size)
    hidden = width
    layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    for _ in range(k - 1):
        layers += [nn.Conv2d(hidden, hidden * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(hidden * 2)]
        layers.append(nn.LeakyReLU(0.2, True))
        hidden *= 2
    layers.append(nn.Conv2d(hidden, 1, base, 1, 0))  # [B, 1, 1, 1] logits
    return nn.Sequential(*layers)


@dataclass
class DCGANConfig(AdversarialConfig):
    width: int = 64  # channels of G's last hidden layer and D's first
    channels_last: bool = True


@models.register("dcgan")
class DCGAN(AdversarialModel):
    """Deep convolutional GAN for square images of 28, 32, 64, ... pixels."""

    Config = DCGANConfig
    default_batches = 10000  # the budget of its zoo entry and results row
    precision = "bf16-mixed"  # with channels_last, faster at the same quality (benchmarks/log/gan.md, "Speed")

    def __init__(self, config: DCGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        if image_shape[1] != image_shape[2]:
            raise GenzooError(f"DCGAN needs square images, got {image_shape[1]}x{image_shape[2]}")
        self.generator = dcgan_generator(config.latent_dim, self.image_shape, config.width)
        self.discriminator = dcgan_discriminator(self.image_shape, config.width)
        self.apply(normal_init)
        self._lay_out_parameters()
