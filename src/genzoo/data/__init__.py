"""Datasets by name, held in memory as uint8 tensors [N, C, H, W]; see ``genzoo list``.

``load_dataset("mnist")``; ``load_dataset("folder:/path/to/images?size=64")`` for a user's own images.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

from torch import Tensor

from genzoo.errors import GenzooError
from genzoo.registry import datasets


@dataclass(frozen=True)
class ImageDataset:
    """A train/test split of uint8 images; ``levels`` is 2 for binary data and 256 for 8-bit grey/colour."""

    name: str
    train: Tensor  # [N, C, H, W] uint8
    test: Tensor  # [M, C, H, W] uint8
    train_labels: Tensor | None
    test_labels: Tensor | None
    levels: int
    source: str  # provenance, written into metrics so numbers say what data they are on
    valid: Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        return None if self.train_labels is None else int(self.train_labels.max()) + 1


_loaded: dict[str, ImageDataset] = {}

SIZE_RANGE = (8, 512)  # side lengths ``?size=`` accepts; a model rejects sizes its architecture cannot take


def split_options(name: str) -> tuple[str, dict[str, int]]:
    """``"folder:~/faces?size=64"`` -> ``("folder:~/faces", {"size": 64})``: a dataset name and its options.

    Options follow the last ``?`` as ``key=value`` pairs joined by ``&``; today the one option is ``size``, the side
    of the square images (folders and celeba), which must be an integer in :data:`SIZE_RANGE`.
    """
    base, sep, tail = name.rpartition("?")
    if not sep:
        return name, {}
    options: dict[str, int] = {}
    for pair in tail.split("&"):
        key, eq, value = pair.partition("=")
        if key != "size" or not eq:
            raise GenzooError(f"dataset option {pair!r} in {name!r} is not known; the one option is size=N")
        if not value.isdigit() or not SIZE_RANGE[0] <= int(value) <= SIZE_RANGE[1]:
            low, high = SIZE_RANGE
            raise GenzooError(f"{name}: size must be an integer from {low} to {high}, got {value!r}")
        options[key] = int(value)
    return base, options


def load_dataset(name: str) -> ImageDataset:
    """Load (once per process) the dataset registered as ``name``, or ``folder:PATH``; either may end in
    ``?size=N`` where the dataset takes a size (see :func:`split_options`)."""
    if name not in _loaded:
        check_dataset_name(name)
        base, options = split_options(name)
        if base.startswith("folder:"):
            from genzoo.data.sources import load_folder

            dataset = load_folder(base.removeprefix("folder:"), **options)
        else:
            dataset = datasets.get(base)(**options)
        _loaded[name] = dataclasses.replace(dataset, name=name) if options else dataset
    return _loaded[name]


def dataset_names() -> list[str]:
    return [*datasets.names(), "folder:PATH"]


def check_dataset_name(name: str) -> None:
    """Fail early (before any run directory exists) on a name that is not a dataset or an option it lacks."""
    base, options = split_options(name)
    if base.startswith("folder:"):
        if not base.removeprefix("folder:"):
            raise GenzooError("folder: needs a path, e.g. folder:~/pictures")
        return
    factory = datasets.get(base)
    taken = inspect.signature(factory).parameters
    for key in options:
        if key not in taken:
            raise GenzooError(f"dataset {base} takes no {key} option (its images have one size)")


# importing these registers their datasets (colour photographs: cifar10, celeba; attribute views:
# mnist-attributes, fashion-attributes)
from genzoo.data import colour, domains, sources  # noqa: E402,F401
