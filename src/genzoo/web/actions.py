"""What each page computes, as plain functions of loaded models and decoded inputs; images come back as PNG data
URLs in [0, 1] display range. The routes (``genzoo.web.app``) validate requests and run these as jobs."""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genzoo.data.images import read_image_bytes
from genzoo.data.transforms import prepare_test
from genzoo.errors import GenzooError
from genzoo.viz import grid_png, to_unit_range
from genzoo.web.catalog import Entry, open_vocabulary

MAX_UPLOAD_BYTES = 2 * 2**20
MAX_UPLOAD_PIXELS = 1024 * 1024


def data_url(images: Tensor, columns: int | None = None, padding: int = 2) -> str:
    """[N, C, H, W] images in [0, 1] as one PNG grid, a ``data:`` URL."""
    png = grid_png(images.detach().float().cpu().clamp(0, 1), columns, padding=padding)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def shown(entry: Entry, images: Tensor) -> Tensor:
    """Images in the model's data range -> [0, 1] for display."""
    return to_unit_range(images, entry.model.input_kind, entry.levels)


def decode_upload(entry: Entry, data: bytes, field: str) -> np.ndarray:
    """An uploaded image as uint8 [H, W, C] at the model's size and channels, checked as ``folder:`` images are
    (with the upload limits)."""
    channels, height, width = entry.model.image_shape
    mode = "L" if channels == 1 else "RGB"
    return read_image_bytes(data, f"upload {field!r}", mode, (height, width), MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS)


def model_input(entry: Entry, pixels: np.ndarray) -> Tensor:
    """uint8 [H, W, C] -> one image [1, C, H, W] as the model's test data is prepared (binarized, dequantized,
    scaled, ...), with the grey levels of the data it was trained on."""
    images = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None]  # [1, C, H, W] uint8
    levels = entry.levels
    if levels != 256:
        images = torch.round(images.float() * (levels - 1) / 255).to(torch.uint8)
    return prepare_test(images, entry.model.input_kind, levels)


def samples(entry: Entry, n: int, seed: int) -> dict[str, Any]:
    import genzoo

    torch.manual_seed(seed)
    images = genzoo.sample_images(entry.model, n, entry.levels)
    return {"image": data_url(images)}


def likelihood(entries: list[Entry], uploads: dict[str, np.ndarray]) -> dict[str, Any]:
    """The drawn image's NLL under each model, in nats and bits per dimension (``uploads``: the image decoded for
    each model id)."""
    from genzoo.metrics.likelihood import nll_metrics

    rows = []
    for entry in entries:
        started = time.perf_counter()
        x = model_input(entry, uploads[entry.id])
        metrics = nll_metrics(entry.model.log_prob, x, entry.model.input_kind, entry.levels)
        rows.append(
            {
                "id": entry.id,
                "model": entry.model.name,
                "nll_nats": metrics["nll_nats"],
                "bits_per_dim": metrics["bits_per_dim"],
                "seconds": round(time.perf_counter() - started, 4),
            }
        )
    return {"rows": rows}


def complete(entry: Entry, pixels: np.ndarray, n: int, method: str, seed: int) -> dict[str, Any]:
    """``n`` completions of the image's lower half given its upper half; first the given half (lower half grey)."""
    model = entry.model
    x = model_input(entry, pixels)
    height = x.shape[-2]
    given = x.clone()
    given[..., height // 2 :, :] = -1  # sampled; entries >= 0 are kept
    options = {"method": method} if method else {}
    torch.manual_seed(seed)
    completions = shown(entry, model.sample(n, conditioned_on=given, **options))
    upper = shown(entry, x.float())
    upper[..., height // 2 :, :] = 0.5
    return {"image": data_url(torch.cat([upper, completions]), columns=n + 1)}


def one_sample(entry: Entry, seed: int) -> dict[str, Any]:
    """One sample at the model's size, unpadded, to put on a drawing canvas."""
    import genzoo

    torch.manual_seed(seed)
    return {"image": data_url(genzoo.sample_images(entry.model, 1, entry.levels), padding=0)}


def walk(entry: Entry, start: np.ndarray, end: np.ndarray, steps: int, spherical: bool) -> dict[str, Any]:
    """Decoded codes on the way from the encoding of ``start`` to that of ``end``, both included."""
    from genzoo.latent_exploration import interpolate

    images = interpolate(entry.model, model_input(entry, start), model_input(entry, end), steps, spherical)
    return {"image": data_url(shown(entry, images), columns=steps)}


def manifold(entry: Entry, size: int) -> dict[str, Any]:
    from genzoo.latent_exploration import manifold as decode_grid

    return {"image": data_url(shown(entry, decode_grid(entry.model, size)), columns=size, padding=0)}


def infogan(entry: Entry, category: int, continuous: list[float], seed: int) -> dict[str, Any]:
    """The image of one fixed noise draw (``seed``) with the chosen codes, and that noise with every category."""
    model = entry.model
    config = model.config
    if len(continuous) != config.continuous_codes:
        raise GenzooError(f"this infogan has {config.continuous_codes} continuous codes, got {len(continuous)} values")
    noise = torch.randn(1, config.latent_dim, generator=torch.Generator().manual_seed(seed))
    k = config.categories
    codes = torch.tensor([continuous], dtype=torch.float32)
    image = model.generate_from_codes(noise, torch.tensor([category]), codes)
    row = model.generate_from_codes(noise.expand(k, -1), torch.arange(k), codes.expand(k, -1))
    return {"image": data_url(shown(entry, image), padding=0), "row": data_url(shown(entry, row), columns=k)}


def text_to_image(entry: Entry, text: str, n: int, seed: int) -> dict[str, Any]:
    """``n`` images of the caption; words outside a closed vocabulary are refused by name."""
    import genzoo
    from genzoo.data.captions import tokenize

    model = entry.model
    words = tokenize(text)
    if not words:
        raise GenzooError("type a caption, e.g. a thick red seven leaning left")
    unknown = sorted({word for word in words if word not in model.words})
    if unknown and not open_vocabulary(model):
        raise GenzooError(f"unknown words: {', '.join(unknown)} (the words this model knows are listed)")
    torch.manual_seed(seed)
    images = genzoo.sample_images(model, n, entry.levels, text=text)
    return {"image": data_url(images), "unknown": unknown}


def translate(entry: Entry, pixels: np.ndarray, to: str) -> dict[str, Any]:
    """The image as the model sees it and its translation to ``to``."""
    x = model_input(entry, pixels)
    translated = entry.model.translate(x, to)
    return {"input": data_url(shown(entry, x), padding=0), "output": data_url(shown(entry, translated), padding=0)}


def test_image(entry: Entry, seed: int) -> dict[str, Any]:
    """A test image of the data the model was trained on, unpadded."""
    from genzoo.data import load_dataset

    dataset = load_dataset(entry.model.run_config["data"])
    index = int(torch.randint(len(dataset.test), (1,), generator=torch.Generator().manual_seed(seed)))
    image = dataset.test[index : index + 1].float() / (dataset.levels - 1)
    return {"image": data_url(image, padding=0)}


def puzzle(entry: Entry, pixels: np.ndarray, corners: list[tuple[int, int]] | None, seed: int) -> dict[str, Any]:
    """Key patches cut from the image at ``corners`` (top, left), or chosen as in training when None; the strip
    patches -> true mask -> predicted mask -> completed image."""
    from genzoo.data.patches import crop_patches, patch_mask

    model = entry.model
    count, size = model.config.patch_count, model.config.patch_size
    x = model_input(entry, pixels)
    height, width = x.shape[-2:]
    generator = torch.Generator().manual_seed(seed)
    if corners is None:
        chosen = model.key_patches(x, generator).corners
    else:
        if len(corners) != count:
            raise GenzooError(f"this puzzlegan takes {count} patches, got {len(corners)}")
        if any(not (0 <= top <= height - size and 0 <= left <= width - size) for top, left in corners):
            raise GenzooError(f"patch corners must be within 0..{height - size} x 0..{width - size}")
        chosen = torch.tensor([corners], dtype=torch.long)
    patches = crop_patches(x, chosen, size)
    truth = patch_mask(chosen, size, height, width)
    completed = model.complete(patches, model.latent(1, generator))
    strip = model.strips([*model.patch_cells(patches), truth * 2 - 1, completed.masks * 2 - 1, completed.images])
    return {"image": data_url(shown(entry, strip), padding=0), "corners": chosen[0].tolist()}


def progan(entry: Entry, n: int, seed: int) -> dict[str, Any]:
    """The same ``n`` noise draws at every resolution the generator grew through."""
    model = entry.model
    latent = model.latent(n, torch.Generator().manual_seed(seed))
    level, _ = model.stage()
    rows = []
    for at in range(level + 1):
        images = (model.generate_at(latent, at) + 1) / 2
        rows.append({"resolution": images.shape[-1], "image": data_url(images, columns=n)})
    return {"rows": rows}
