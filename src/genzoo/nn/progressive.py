"""Layers of the Progressive GAN (Karras, Aila, Laine & Lehtinen, ICLR 2018), written once.

- Equalized learning rate (Sec. 4.1): weights are stored as N(0, 1) draws and multiplied at every forward pass by
  He's constant gain / sqrt(fan_in), so Adam's scale-free updates move every layer at the same relative speed.
- Pixelwise feature normalization (Sec. 4.2): b = a / sqrt(mean_c a_c^2 + 1e-8) at every pixel.
- Minibatch standard deviation (Sec. 3): the standard deviation of every feature over a group of images, averaged
  into one number per group and appended as a constant extra channel, so the critic can see a lack of variety.
- Fade-in (Sec. 2, Fig. 2): while a new resolution is added, the output is (1 - alpha) * old path (nearest-
  upsampled when it is the lower resolution) + alpha * new path, alpha rising linearly from 0 to 1.

torch has none of these layers, hence written here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HE_GAIN = math.sqrt(2.0)
LEAKY_SLOPE = 0.2
EPSILON = 1e-8


class EqualizedConv2d(nn.Module):
    """A convolution whose N(0, 1) weight is scaled at run time by gain / sqrt(in_channels * k * k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = HE_GAIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    """A linear layer whose N(0, 1) weight is scaled at run time by gain / sqrt(in_features)."""

    def __init__(self, in_features: int, out_features: int, gain: float = HE_GAIN) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Each pixel's feature vector divided by its root mean square over channels (dim 1)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + EPSILON)


class MinibatchStdDev(nn.Module):
    """Appends one channel: per group of ``group_size`` images, the mean over (C, H, W) of the features' standard
    deviation over the group. Image b belongs to group b mod (B / group), as in the paper's code; the group shrinks
    to the largest divisor of the batch size not above ``group_size``."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        group = next(g for g in range(min(self.group_size, batch), 0, -1) if batch % g == 0)
        grouped = x.reshape(group, -1, channels, height, width)  # [G, B/G, C, H, W]
        deviation = (grouped.var(0, unbiased=False) + EPSILON).sqrt()  # [B/G, C, H, W]
        per_group = deviation.mean((1, 2, 3))  # [B/G]
        channel = per_group.repeat(group)[:, None, None, None].expand(batch, 1, height, width)
        return torch.cat([x, channel], 1)


def fade_in(previous: Tensor, new: Tensor, alpha: float) -> Tensor:
    """(1 - alpha) * previous + alpha * new; ``previous`` is nearest-upsampled first when it is smaller."""
    if previous.shape[-1] != new.shape[-1]:
        previous = F.interpolate(previous, size=new.shape[-2:], mode="nearest")
    if alpha >= 1:
        return new
    return torch.lerp(previous, new, alpha)


def downsample(images: Tensor, factor: int) -> Tensor:
    """Average pooling by ``factor`` (the paper's way of showing reals to the critic at a lower resolution)."""
    return images if factor == 1 else F.avg_pool2d(images, factor)


class GeneratorBlock(nn.Module):
    """Doubles the resolution: nearest upsampling, then two 3x3 equalized convolutions + LeakyReLU + pixel norm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            EqualizedConv2d(in_channels, out_channels, 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            PixelNorm(),
            EqualizedConv2d(out_channels, out_channels, 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            PixelNorm(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DiscriminatorBlock(nn.Module):
    """Halves the resolution: two 3x3 equalized convolutions + LeakyReLU, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            EqualizedConv2d(in_channels, in_channels, 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            EqualizedConv2d(in_channels, out_channels, 3),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.AvgPool2d(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
