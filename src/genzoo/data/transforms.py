"""Vectorized transforms from stored uint8 images to what a model consumes.

A model declares one ``input_kind``; the same function prepares training batches (fresh randomness per step) and
the test set (fixed randomness, so every model is scored on the same binarization / dequantization noise).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

InputKind = Literal["binary", "dequantized", "signed", "levels", "unit"]
INPUT_KINDS: tuple[str, ...] = ("binary", "dequantized", "signed", "levels", "unit")
TEST_SEED = 20110411  # fixed seed of the static test binarization / dequantization


def binarize(images: Tensor, levels: int, generator: torch.Generator | None) -> Tensor:
    """0/1 floats: data already binary is kept; grey levels are sampled as Bernoulli(intensity)."""
    if levels == 2:
        return images.float()
    return torch.bernoulli(images.float() / (levels - 1), generator=generator)


def dequantize(images: Tensor, levels: int, generator: torch.Generator | None) -> Tensor:
    """Uniform dequantization to [0, 1): (x + u) / levels, u ~ U[0, 1) drawn on the images' device."""
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    return (images.float() + noise) / levels


def scale_signed(images: Tensor, levels: int) -> Tensor:
    """Grey levels to [-1, 1] (the tanh range of GAN generators)."""
    return images.float() * (2.0 / (levels - 1)) - 1.0


def prepare(images: Tensor, kind: InputKind, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """uint8 images [B, C, H, W] -> the float (or long, for ``levels``) tensor a model of ``kind`` consumes."""
    if kind == "binary":
        return binarize(images, levels, generator)
    if kind == "dequantized":
        return dequantize(images, levels, generator)
    if kind == "signed":
        return scale_signed(images, levels)
    if kind == "levels":
        return images.long()
    if kind == "unit":
        return images.float() / (levels - 1)
    raise ValueError(f"unknown input kind {kind!r}")


def prepare_test(images: Tensor, kind: InputKind, levels: int) -> Tensor:
    """The fixed (static) preparation of an evaluation set."""
    return prepare(images, kind, levels, torch.Generator().manual_seed(TEST_SEED))


def random_shift(
    images: Tensor, pixels: int, generator: torch.Generator | None = None, mode: str = "constant"
) -> Tensor:
    """Each image translated by its own random offset of up to ``pixels`` in x and y (pad by ``pixels`` with
    ``F.pad``'s ``mode``, zeros for "constant", then crop at the offset). Differentiable in ``images``, so a GAN can
    apply it to generated images inside the generator's graph (Zhao et al. 2020, DiffAugment's "translation")."""
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (pixels,) * 4, mode=mode)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, batch), generator=generator, device=device)
    rows = (dy[:, None] + torch.arange(height, device=device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(width, device=device))[:, None, None, :]  # [B, 1, 1, W]
    index = torch.arange(batch, device=device)[:, None, None, None]
    return padded[index, torch.arange(channels, device=device)[None, :, None, None], rows, cols]
