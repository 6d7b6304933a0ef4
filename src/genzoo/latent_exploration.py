"""Looking inside a latent variable model: interpolation, latent traversal and the 2-D manifold plot.

Everything works on any :class:`genzoo.models.latent.base.LatentModel` (``encode``, ``decode``, ``sample_prior``) and
returns images in the model's data range; :func:`explore_run` writes them as PNG grids, and the interpolations and
traversals also as animated GIFs, for ``genzoo interpolate``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from genzoo.errors import GenzooError
from genzoo.models.latent.base import LatentModel

# the figures that are walks through the latent space, one per row: also written as animated GIFs
ANIMATED = ("interpolation.png", "traversal.png")


def _latent_model(model: object) -> LatentModel:
    if not isinstance(model, LatentModel):
        raise GenzooError(f"{getattr(model, 'name', type(model).__name__)} is not a latent variable model")
    return model


def slerp(start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of codes [B, Z] at fractions t [T] -> [B, T, Z] (White 2016); linear when parallel."""
    cosine = torch.nn.functional.cosine_similarity(start, end, dim=-1).clamp(-1 + 1e-7, 1 - 1e-7)[:, None]  # [B, 1]
    omega = torch.acos(cosine)
    t = t[None, :]  # [1, T]
    near_parallel = omega < 1e-4
    weight_start = torch.where(near_parallel, 1 - t, torch.sin((1 - t) * omega) / torch.sin(omega))
    weight_end = torch.where(near_parallel, t, torch.sin(t * omega) / torch.sin(omega))
    return weight_start[..., None] * start[:, None] + weight_end[..., None] * end[:, None]


@torch.no_grad()
def interpolate(model: LatentModel, x_start: Tensor, x_end: Tensor, steps: int = 10, spherical: bool = False) -> Tensor:
    """Decoded codes between the encodings of image pairs: [B, C, H, W] x2 -> [B * steps, C, H, W], row-major
    (row b goes from x_start[b] to x_end[b], both ends included)."""
    model = _latent_model(model)
    if steps < 2:
        raise GenzooError("interpolation needs at least 2 steps")
    start, end = model.encode(x_start), model.encode(x_end)  # [B, Z]
    t = torch.linspace(0, 1, steps, device=start.device)
    if spherical:
        codes = slerp(start, end, t)
    else:
        codes = start[:, None] + t[None, :, None] * (end - start)[:, None]  # [B, T, Z]
    return model.decode(codes.flatten(0, 1))


def prior_quantiles(
    model: LatentModel, values: int, low: float = 0.03, high: float = 0.97, draws: int = 20_000
) -> Tensor:
    """Per-dimension quantiles [values, Z] of the prior's marginals (estimated from draws), so grids cover where
    the prior puts its mass whatever its shape (Gaussian or mixture)."""
    codes = model.sample_prior(draws)
    probabilities = torch.linspace(low, high, values, device=codes.device)
    return torch.quantile(codes, probabilities, dim=0)


@torch.no_grad()
def traversal(model: LatentModel, x: Tensor, dims: list[int] | None = None, values: int = 9) -> Tensor:
    """Vary one code dimension at a time around the encoding of one image x [1, C, H, W]: row d sweeps dimension
    dims[d] over its prior quantiles, the others fixed -> [len(dims) * values, C, H, W]."""
    model = _latent_model(model)
    dims = list(range(min(model.latent_dim, 10))) if dims is None else dims
    if any(not 0 <= d < model.latent_dim for d in dims):
        raise GenzooError(f"traversal dimensions must be in [0, {model.latent_dim})")
    code = model.encode(x[:1])[0]  # [Z]
    sweep = prior_quantiles(model, values)  # [values, Z]
    codes = code.repeat(len(dims), values, 1)  # [len(dims), values, Z]
    for row, d in enumerate(dims):
        codes[row, :, d] = sweep[:, d]
    return model.decode(codes.flatten(0, 1))


@torch.no_grad()
def manifold(model: LatentModel, size: int = 20) -> Tensor:
    """Kingma & Welling's Fig. 4: decode a size x size grid of 2-D codes spaced by prior quantiles, so that equal
    steps carry equal prior mass -> [size * size, C, H, W] (the first latent dimension varies along a row)."""
    model = _latent_model(model)
    if model.latent_dim != 2:
        raise GenzooError(f"the manifold plot needs a 2-D latent space, this model has {model.latent_dim}")
    sweep = prior_quantiles(model, size)  # [size, 2]
    rows, columns = torch.meshgrid(sweep[:, 1].flip(0), sweep[:, 0], indexing="ij")
    return model.decode(torch.stack([columns, rows], -1).flatten(0, 1))


def explore_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    pairs: int = 8,
    steps: int = 10,
    spherical: bool = False,
    seed: int = 0,
) -> dict[str, Path]:
    """Write interpolation.png, traversal.png, reconstructions.png and (2-D latents) manifold.png for a trained
    latent model, using test images of the data it was trained on, and interpolation.gif and traversal.gif, whose
    frame t shows step t of every row; returns the written paths by file name."""
    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.transforms import prepare_test
    from genzoo.runs import atomic_write_bytes
    from genzoo.viz import animation_gif, save_grid, to_unit_range

    model = _latent_model(genzoo.load(run_dir))
    if out is None:  # beside a run's own files; a zoo entry's go to the current directory
        out = run_dir if Path(run_dir).is_dir() else "."
    out_dir = Path(out)
    dataset = load_dataset(model.run_config["data"])
    levels = dataset.levels
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(dataset.test), generator=generator)[: 2 * pairs]
    if len(chosen) < 2 * pairs:
        raise GenzooError(f"--pairs {pairs} needs {2 * pairs} test images, the data has {len(dataset.test)}")
    x = prepare_test(dataset.test[chosen], model.input_kind, levels)
    torch.manual_seed(seed)
    scale = max(1, 56 // model.image_shape[-1])
    figures = {
        "interpolation.png": (interpolate(model, x[:pairs], x[pairs:], steps, spherical), steps),
        "traversal.png": (traversal(model, x[:1], values=steps), steps),
        "reconstructions.png": (torch.cat([x.float(), model.reconstruct(x)]), 2 * pairs),
    }
    if model.latent_dim == 2:
        figures["manifold.png"] = (manifold(model), 20)
    written = {}
    for name, (images, columns) in figures.items():
        shown = to_unit_range(images, model.input_kind, levels)
        written[name] = save_grid(shown, out_dir / name, columns, scale)
        if name in ANIMATED:  # each row of the grid is a walk: the animation takes its steps at once in every row
            frames = shown.unflatten(0, (-1, columns)).transpose(0, 1)  # [steps, rows, C, H, W]
            gif = out_dir / Path(name).with_suffix(".gif")
            atomic_write_bytes(gif, animation_gif(frames, scale=scale))
            written[gif.name] = gif
    return written
