"""Key local patches cut from real images, with the ground-truth mask of where they came from (Puzzle-GAN).

Lee et al. (ECCV 2018) take K square patches from informative places of an object. genzoo picks them without a
detector: a patch's top-left corner is drawn, without replacement, with probability proportional to the window's
content — the mean distance of its pixels from the background value, plus a small floor so blank images still
give patches. On MNIST-like data this puts the patches on strokes and garment parts instead of empty borders.

The mask is the union of the K patch squares: 1 where some patch was cut, 0 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genzoo.data.images import read_image_file
from genzoo.errors import GenzooError

CONTENT_FLOOR = 1e-3  # keeps every window possible, so blank images still yield K distinct patches


@dataclass
class KeyPatches:
    patches: Tensor  # [B, K, C, P, P]
    corners: Tensor  # [B, K, 2] long: (top, left) of each patch in its image
    mask: Tensor  # [B, 1, H, W] float, 1 inside the union of the patches


def key_patch_corners(
    images: Tensor, count: int, patch_size: int, background: float, generator: torch.Generator | None = None
) -> Tensor:
    """Top-left corners [B, K, 2] of ``count`` distinct windows per image, drawn in proportion to their content."""
    batch, _, height, width = images.shape
    if not 0 < patch_size <= min(height, width):
        raise GenzooError(f"patch size {patch_size} does not fit {height}x{width} images")
    positions = (height - patch_size + 1) * (width - patch_size + 1)
    if count > positions:
        raise GenzooError(f"{count} distinct {patch_size}x{patch_size} patches do not fit {height}x{width} images")
    content = (images.float() - background).abs().mean(1, keepdim=True)  # [B, 1, H, W]
    window_content = F.avg_pool2d(content, patch_size, stride=1).flatten(1)  # [B, positions]
    weights = window_content + CONTENT_FLOOR * window_content.amax(1, keepdim=True).clamp(min=1e-12)
    index = torch.multinomial(weights.cpu(), count, replacement=False, generator=generator).to(images.device)
    columns = width - patch_size + 1
    return torch.stack([index // columns, index % columns], -1)


def crop_patches(images: Tensor, corners: Tensor, patch_size: int) -> Tensor:
    """The windows of ``images`` [B, C, H, W] at ``corners`` [B, K, 2], as [B, K, C, P, P]."""
    offsets = torch.arange(patch_size, device=images.device)
    rows = (corners[..., 0, None] + offsets)[:, :, None, :, None]  # [B, K, 1, P, 1]
    columns = (corners[..., 1, None] + offsets)[:, :, None, None, :]  # [B, K, 1, 1, P]
    image_index = torch.arange(len(images), device=images.device)[:, None, None, None, None]
    channel_index = torch.arange(images.shape[1], device=images.device)[None, None, :, None, None]
    return images[image_index, channel_index, rows, columns]


def patch_mask(corners: Tensor, patch_size: int, height: int, width: int) -> Tensor:
    """1 inside the union of the squares at ``corners`` [B, K, 2], else 0: [B, 1, H, W] float."""

    def inside(start: Tensor, length: int) -> Tensor:  # [B, K] -> [B, K, length]
        position = torch.arange(length, device=corners.device)
        return (position >= start[..., None]) & (position < start[..., None] + patch_size)

    covered = inside(corners[..., 0], height)[..., :, None] & inside(corners[..., 1], width)[..., None, :]
    return covered.any(1, keepdim=True).float()


def extract_key_patches(
    images: Tensor, count: int, patch_size: int, background: float, generator: torch.Generator | None = None
) -> KeyPatches:
    """K key patches per image and their ground-truth mask."""
    corners = key_patch_corners(images, count, patch_size, background, generator)
    height, width = images.shape[-2:]
    mask = patch_mask(corners, patch_size, height, width)
    return KeyPatches(crop_patches(images, corners, patch_size), corners, mask)


def paste_patches(patches: Tensor, corners: Tensor, height: int, width: int, background: float) -> Tensor:
    """Patches [B, K, C, P, P] put back at ``corners`` on a background canvas [B, C, H, W] (later patches on top)."""
    batch, count, channels, size, _ = patches.shape
    canvas = torch.full((batch, channels, height, width), background, dtype=patches.dtype, device=patches.device)
    for k in range(count):
        for b in range(batch):
            top, left = (int(v) for v in corners[b, k])
            canvas[b, :, top : top + size, left : left + size] = patches[b, k]
    return canvas


def load_patch_images(paths: list[str], channels: int, patch_size: int) -> Tensor:
    """Patch image files (PNG, JPEG, ...) as uint8 [K, C, P, P], converted to ``channels`` and resized to
    ``patch_size`` when needed; a missing or unreadable file is a GenzooError naming it."""
    size = (patch_size, patch_size)
    patches = [read_image_file(path, "L" if channels == 1 else "RGB", size) for path in paths]  # [P, P, C] each
    return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()
