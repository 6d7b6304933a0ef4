"""Users' image files, read in one place: bounded in bytes, pixels and type, and every failure one line naming the file.

Image folders (``folder:PATH``), ``genzoo translate --input`` and Puzzle-GAN's ``--patches`` all read through
:func:`read_image_file`, and the web explorer's uploads through :func:`read_image_bytes` (same checks, its own
limits). PIL decodes; this module only decides what is accepted and how pixel types become 8-bit:
16-bit integer images are scaled down (not clipped), float images are taken as [0, 1] (or [0, 255] when their
values exceed 1), palettes, alpha and CMYK are converted by PIL.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from genzoo.errors import GenzooError

if TYPE_CHECKING:
    from PIL.Image import Image as Picture

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 4096 * 4096


def read_image_file(
    path: Path | str, mode: Literal["L", "RGB"], size: tuple[int, int] | None = None, crop: bool = False
) -> np.ndarray:
    """One image file as uint8 [H, W, C] (C = 1 for "L", 3 for "RGB"), resized to ``size`` = (height, width);
    with ``crop``, first cut to the centred region of ``size``'s aspect ratio, so nothing is stretched."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise GenzooError(f"image {path} does not exist")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise GenzooError(f"image {path} is larger than {MAX_IMAGE_BYTES // 2**20} MB")
    return decode_image(path, str(path), mode, size, crop)


def read_image_bytes(
    data: bytes,
    label: str,
    mode: Literal["L", "RGB"],
    size: tuple[int, int] | None = None,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """An image file's content (an upload, named ``label`` in errors) as :func:`read_image_file` reads a file,
    under the given limits (default: those of files)."""
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    if len(data) > max_bytes:
        raise GenzooError(f"image {label} is larger than {max_bytes / 2**20:g} MB")
    return decode_image(io.BytesIO(data), label, mode, size, max_pixels=max_pixels)


def decode_image(
    source: Path | BinaryIO,
    label: str,
    mode: Literal["L", "RGB"],
    size: tuple[int, int] | None,
    crop: bool = False,
    max_pixels: int | None = None,
) -> np.ndarray:
    """:func:`read_image_file` for an open file (e.g. a member of an archive) named ``label`` in errors; at most
    ``max_pixels`` pixels (default: those of files)."""
    from PIL import Image, UnidentifiedImageError

    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels

    try:
        with Image.open(source, formats=IMAGE_FORMATS) as picture:
            if picture.width * picture.height > max_pixels:
                raise GenzooError(
                    f"image {label} has {picture.width}x{picture.height} pixels, more than {max_pixels:,}"
                )
            picture.load()
            picture = to_8bit(picture).convert(mode)
            if size is not None and picture.size != (size[1], size[0]):
                if crop:
                    picture = picture.crop(centred_box(picture.size, (size[1], size[0])))
                picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(picture, dtype=np.uint8)
    except UnidentifiedImageError:
        raise GenzooError(f"{label} is not an image of a supported type ({', '.join(IMAGE_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GenzooError(f"cannot read image {label}: {message}") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], len(mode))


def centred_box(have: tuple[int, int], want: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred (left, top, right, bottom) box of a ``have`` = (width, height) picture with the aspect
    ratio of ``want``. Cut out before resizing, so the resampling filter never reaches the cropped-off margins."""
    scale = min(have[0] / want[0], have[1] / want[1])
    width, height = round(want[0] * scale), round(want[1] * scale)
    left, top = (have[0] - width) // 2, (have[1] - height) // 2
    return left, top, left + width, top + height


def to_8bit(picture: Picture) -> Picture:
    """16-bit and 32-bit integer or float single-channel images as 8-bit "L" (scaled, not clipped)."""
    from PIL import Image

    if picture.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return picture
    values = np.asarray(picture, dtype=np.float64)
    if picture.mode == "F":
        finite = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        scaled = finite * 255 if finite.max(initial=0) <= 1 else finite
    else:
        scaled = values / 257 if values.max(initial=0) > 255 or picture.mode.startswith("I;16") else values
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
