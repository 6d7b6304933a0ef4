"""Image grids and their animations (numpy + PIL), written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from genzoo.runs import atomic_write_bytes


def to_unit_range(images: Tensor, input_kind: str, levels: int) -> Tensor:
    """Model-space images (the model's ``input_kind``) to floats in [0, 1] for display."""
    images = images.detach().float().cpu()
    if input_kind == "signed":
        images = (images + 1) / 2
    elif input_kind == "levels":
        images = images / (levels - 1)
    return images.clamp(0, 1)


def grid(images: Tensor, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """[N, C, H, W] floats in [0, 1] -> one uint8 image [rows*(H+p)+p, cols*(W+p)+p, C]."""
    n, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), 128, np.uint8
    )
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(n):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = pixels[i]
    return canvas


def grid_picture(images: Tensor, columns: int | None = None, scale: int = 1, padding: int = 2) -> Image.Image:
    """[N, C, H, W] images in [0, 1] as one PIL image of their grid (``scale`` enlarges small images)."""
    canvas = grid(images, columns, padding)
    picture = Image.fromarray(canvas[..., 0] if canvas.shape[-1] == 1 else canvas)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture


def grid_png(images: Tensor, columns: int | None = None, scale: int = 1, padding: int = 2) -> bytes:
    """[N, C, H, W] images in [0, 1] as the bytes of one PNG grid (``scale`` enlarges small images)."""
    buffer = io.BytesIO()
    grid_picture(images, columns, scale, padding).save(buffer, format="PNG")
    return buffer.getvalue()


def animation_gif(frames: Tensor, columns: int | None = None, scale: int = 1, milliseconds: int = 150) -> bytes:
    """[T, N, C, H, W] images in [0, 1] as the bytes of a looping animated GIF whose frame t is the grid of
    ``frames[t]``; it plays forth and back, so the loop never jumps from the last frame to the first."""
    order = [*range(len(frames)), *range(len(frames) - 2, 0, -1)]
    pictures = [grid_picture(frames[t], columns, scale) for t in order]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=milliseconds, loop=0)
    return buffer.getvalue()


def save_grid(images: Tensor, path: str | Path, columns: int | None = None, scale: int = 1) -> Path:
    """Save [N, C, H, W] images in [0, 1] as one PNG grid (``scale`` enlarges small images)."""
    atomic_write_bytes(Path(path), grid_png(images, columns, scale))
    return Path(path)
