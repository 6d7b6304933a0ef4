"""Attribute views of real digits and garments: domains for translation and captions for text-to-image.

Every source image of ``mnist`` / ``fashion-mnist`` is rendered once, with one seeded combination of four
attribute groups, into a 3-channel image:

- thickness: ``thin`` (grey erosion, a 2x2 minimum filter) or ``thick`` (grey dilation, a 3x3 maximum filter);
- slant: the image is first deskewed by its second moments, then sheared to lean ``left`` or ``right``
  (a shear of -/+ ``SLANT_SHEAR`` pixels of x per pixel of y);
- colour: the ink is tinted ``white``, ``red``, ``green`` or ``blue``;
- background: ``dark`` (ink on black) or ``light`` (the whole picture inverted, so a red digit becomes cyan ink on
  white; captions and ``--to`` name the colour before inversion).

Because each source image appears exactly once, every domain (e.g. all ``thin`` images and all ``thick`` images)
draws on disjoint source images and nothing leaks a pairing between domains. Labels are a long tensor
[N, 1 + groups]: column 0 the digit / garment class, then one value index per attribute group, so several
attributes hold at once (multi-label) and the engine's batches carry them as ``y`` unchanged.

The attributes can be read back from any image (a generated one too) by the ``measure_*`` functions, which need
no training: stroke width 2 * area / perimeter of the ink, moment slant -cov(x, y) / var(y), mean ink chroma,
border brightness. :func:`read_attributes` turns them into value indices; it is the domain classifier that scores
translated and generated images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genzoo.data import ImageDataset, load_dataset
from genzoo.errors import GenzooError
from genzoo.registry import datasets

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "thickness": ("thin", "thick"),
    "slant": ("left", "right"),
    "colour": ("white", "red", "green", "blue"),
    "background": ("dark", "light"),
}
GROUPS: tuple[str, ...] = tuple(ATTRIBUTE_GROUPS)
INK_COLOURS = torch.tensor(  # RGB of full-intensity ink for each colour value
    [[1.0, 1.0, 1.0], [1.0, 0.15, 0.15], [0.15, 1.0, 0.15], [0.25, 0.4, 1.0]]
)
SLANT_SHEAR = 0.35
INK_THRESHOLD = 0.35  # brightness above which a (dark-background) pixel counts as ink
THICKNESS_THRESHOLD = 2.8  # stroke width (pixels) between the thin and thick renderings, calibrated on mnist
TRAIN_SEED, TEST_SEED = 0, 1


def attribute_index(value: str) -> tuple[int, int]:
    """``"thick"`` -> (group position, value index); every value name is unique across groups."""
    for position, values in enumerate(ATTRIBUTE_GROUPS.values()):
        if value in values:
            return position, values.index(value)
    known = ", ".join(v for values in ATTRIBUTE_GROUPS.values() for v in values)
    raise GenzooError(f"unknown attribute {value!r}; known: {known}")


def parse_attributes(spec: str) -> dict[int, int]:
    """``"thick,red"`` -> {group position: value index}; two values of one group are an error."""
    chosen: dict[int, int] = {}
    for value in (part.strip() for part in spec.split(",") if part.strip()):
        position, index = attribute_index(value)
        if position in chosen:
            raise GenzooError(f"{spec!r} sets the {GROUPS[position]} attribute twice")
        chosen[position] = index
    if not chosen:
        raise GenzooError("no attribute given (e.g. thick,red)")
    return chosen


def random_attributes(n: int, generator: torch.Generator) -> Tensor:
    """Independent uniform values per group, [n, groups] long."""
    return torch.stack([torch.randint(len(v), (n,), generator=generator) for v in ATTRIBUTE_GROUPS.values()], 1)


def _coordinates(height: int, width: int) -> tuple[Tensor, Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    return xs, ys


def _moments(ink: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ink [N, H, W] (non-negative weights) -> centroid y, var(y), cov(x, y) and total mass, each [N]."""
    xs, ys = _coordinates(*ink.shape[-2:])
    mass = ink.sum((-2, -1)).clamp(min=1e-6)
    mean_x = (ink * xs).sum((-2, -1)) / mass
    mean_y = (ink * ys).sum((-2, -1)) / mass
    var_y = (ink * (ys - mean_y[:, None, None]) ** 2).sum((-2, -1)) / mass
    cov_xy = (ink * (xs - mean_x[:, None, None]) * (ys - mean_y[:, None, None])).sum((-2, -1)) / mass
    return mean_y, var_y.clamp(min=1e-6), cov_xy, mass


def shear_to_slant(grey: Tensor, slant: Tensor) -> Tensor:
    """Grey images [N, 1, H, W] in [0, 1] sheared so their moment slant becomes ``slant`` [N] (x per y, right > 0).

    A horizontal shear x' = x + k (y - y_c) adds k to cov(x, y) / var(y), so k = -slant - cov / var moves the
    measured slant (which is -cov / var, positive when the top leans right) exactly to the target.
    """
    _, _, height, width = grey.shape
    mean_y, var_y, cov_xy, _ = _moments(grey[:, 0])
    shear = -slant - cov_xy / var_y  # [N]
    centre_y = (2 * mean_y + 1) / height - 1  # normalized coordinate of the centroid row
    theta = torch.zeros(len(grey), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
    # grid_sample reads the input at x_in = x_out - k (y - y_c); square images share one normalized scale
    theta[:, 0, 1] = -shear * (width / height)
    theta[:, 0, 2] = shear * centre_y * (width / height)
    grid = F.affine_grid(theta, list(grey.shape), align_corners=False)
    return F.grid_sample(grey, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def thin(grey: Tensor) -> Tensor:
    """Grey erosion by a 2x2 square (a minimum filter), [N, 1, H, W]."""
    return -F.max_pool2d(F.pad(-grey, (0, 1, 0, 1), value=0.0), 2, stride=1)


def thicken(grey: Tensor) -> Tensor:
    """Grey dilation by a 3x3 square (a maximum filter), [N, 1, H, W]."""
    return F.max_pool2d(grey, 3, stride=1, padding=1)


def render(images: Tensor, attributes: Tensor, levels: int = 256) -> Tensor:
    """Grey uint8 images [N, 1, H, W] with value indices [N, groups] -> uint8 RGB renderings [N, 3, H, W]."""
    grey = images.float() / (levels - 1)
    thickness, slant, colour, background = attributes.unbind(1)
    shaped = torch.where(thickness[:, None, None, None] == 1, thicken(grey), thin(grey))
    slanted = shear_to_slant(shaped, torch.where(slant == 1, SLANT_SHEAR, -SLANT_SHEAR))
    rgb = slanted * INK_COLOURS[colour][:, :, None, None]  # [N, 3, H, W]
    rgb = torch.where(background[:, None, None, None] == 1, 1 - rgb, rgb)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def unit(images: Tensor) -> Tensor:
    """uint8 images to floats in [0, 1]; float images (already in [0, 1]) pass through."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def measure_background(images: Tensor) -> Tensor:
    """Mean brightness of the one-pixel border, [N]: near 0 for ink on black, near 1 for a light background."""
    x = unit(images)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)
    return border.mean((1, 2))


def ink(images: Tensor) -> Tensor:
    """RGB ink intensity [N, 3, H, W] on a dark background: light-background images are inverted first."""
    x = unit(images)
    light = measure_background(images) > 0.5
    return torch.where(light[:, None, None, None], 1 - x, x)


def ink_mask(images: Tensor) -> Tensor:
    """Pixels whose brightest channel exceeds INK_THRESHOLD, [N, H, W] bool."""
    return ink(images).amax(1) > INK_THRESHOLD


def measure_thickness(images: Tensor) -> Tensor:
    """Stroke width in pixels, [N]: 2 * ink area / ink perimeter (a long stroke of width w has area ~ w L and
    perimeter ~ 2 L). The perimeter counts ink-to-background pixel edges."""
    mask = ink_mask(images).float()
    area = mask.sum((1, 2))
    padded = F.pad(mask, (1, 1, 1, 1))
    edges = (padded[:, 1:, :] != padded[:, :-1, :]).sum((1, 2)) + (padded[:, :, 1:] != padded[:, :, :-1]).sum((1, 2))
    return 2 * area / edges.clamp(min=1)


def measure_slant(images: Tensor) -> Tensor:
    """Moment slant -cov(x, y) / var(y) of the ink brightness, [N]; positive when the top leans right."""
    _, var_y, cov_xy, _ = _moments(ink(images).amax(1))
    return -cov_xy / var_y


def measure_colour(images: Tensor) -> Tensor:
    """Index of the ink colour nearest (in chromaticity) to the mean ink colour, [N]."""
    strokes = ink(images)  # [N, 3, H, W]
    mask = (strokes.amax(1) > INK_THRESHOLD).float()[:, None]
    mean = (strokes * mask).sum((2, 3)) / mask.sum((2, 3)).clamp(min=1)  # [N, 3]
    chroma = mean / mean.sum(1, keepdim=True).clamp(min=1e-6)
    references = INK_COLOURS / INK_COLOURS.sum(1, keepdim=True)
    return torch.cdist(chroma, references).argmin(1)


def read_attributes(images: Tensor) -> Tensor:
    """The measured value index of every group, [N, groups]: the training-free domain classifier."""
    thick = (measure_thickness(images) > THICKNESS_THRESHOLD).long()
    right = (measure_slant(images) > 0).long()
    light = (measure_background(images) > 0.5).long()
    return torch.stack([thick, right, measure_colour(images), light], 1)


def grow(grey: Tensor) -> Tensor:
    """Grey dilation by the 2x2 square mirrored from :func:`thin`'s, [N, 1, H, W]: ``grow(thin(x))`` is the
    morphological opening of x, which gives back every stroke at least 2 pixels wide."""
    return F.max_pool2d(F.pad(grey, (1, 0, 1, 0), value=0.0), 2, stride=1)


def canonical_grey(images: Tensor) -> Tensor:
    """What the plain digit / garment classifier expects, [N, 1, H, W] in [0, 1]: grey ink on black, deskewed
    (moment slant 0, the classic MNIST normalization) and brought back to the source stroke width: thinned when
    measured thick, grown by the mirror of the renderer's erosion when measured thin. The attributes are undone as
    far as they can be; strokes the erosion removed cannot come back, so the classifier's accuracy on real rendered
    images (reported next to every class-preservation number) is the ceiling, which growing thin digits raised
    (benchmarks/log/translation.md, "The class reader")."""
    grey = shear_to_slant(ink(images).amax(1, keepdim=True), torch.zeros(len(images)))
    thick = measure_thickness(images) > THICKNESS_THRESHOLD
    return torch.where(thick[:, None, None, None], thin(grey), grow(grey))


def attribute_view(base: ImageDataset, name: str) -> ImageDataset:
    """Render ``base`` (grey, labelled) with seeded random attributes: train with seed 0, test with seed 1."""
    if base.image_shape[0] != 1 or base.train_labels is None or base.test_labels is None:
        raise GenzooError(f"attribute views need a labelled grey dataset, {base.name} is not")
    splits = []
    for images, labels, seed in ((base.train, base.train_labels, TRAIN_SEED), (base.test, base.test_labels, TEST_SEED)):
        attributes = random_attributes(len(images), torch.Generator().manual_seed(seed))
        rendered = torch.cat(
            [render(part, a, base.levels) for part, a in zip(images.split(4096), attributes.split(4096))]
        )
        splits.append((rendered, torch.cat([labels[:, None], attributes], 1)))
    (train, train_labels), (test, test_labels) = splits
    groups = "; ".join(f"{g}: {'/'.join(v)}" for g, v in ATTRIBUTE_GROUPS.items())
    source = f"{base.source}, rendered once each with seeded attributes ({groups}); labels [class, {', '.join(GROUPS)}]"
    return ImageDataset(name, train, test, train_labels, test_labels, 256, source)


@datasets.register("mnist-attributes")
def mnist_attributes() -> ImageDataset:
    """MNIST digits in four attribute groups (thickness, slant, colour, background), 3x28x28."""
    return attribute_view(load_dataset("mnist"), "mnist-attributes")


@datasets.register("fashion-attributes")
def fashion_attributes() -> ImageDataset:
    """Fashion-MNIST garments in the same four attribute groups, 3x28x28."""
    return attribute_view(load_dataset("fashion-mnist"), "fashion-attributes")


BASE_DATASET = {"mnist-attributes": "mnist", "fashion-attributes": "fashion-mnist"}


def base_dataset_of(data: str) -> str:
    """The grey dataset an attribute view was rendered from (its classifier reads class preservation)."""
    return BASE_DATASET.get(data, data)
