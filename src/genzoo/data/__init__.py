"""Datasets by name, held in memory as uint8 tensors [N, C, H, W]; see ``genzoo list``.

``load_dataset("mnist")``; ``load_dataset("folder:/path/to/images?size=64")`` for a user's own images;
``load_dataset("folders:/path/to/horses,/path/to/zebras")`` for two unpaired domains (CycleGAN).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

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
    # names of the label columns when the labels are 0/1 attributes [N, K] (celeba, a folder's attributes.txt, the
    # two domains A and B of folders:)
    attributes: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        return None if self.train_labels is None else int(self.train_labels.max()) + 1


_loaded: dict[str, ImageDataset] = {}

SIZE_RANGE = (8, 512)  # side lengths ``?size=`` accepts; a model rejects sizes its architecture cannot take


def split_options(name: str) -> tuple[str, dict[str, Any]]:
    """``"folder:~/faces?size=64"`` -> ``("folder:~/faces", {"size": 64})``: a dataset name and its options.

    Options follow the last ``?`` as ``key=value`` pairs joined by ``&``: ``size``, the side of the square images
    (folders and celeba), an integer in :data:`SIZE_RANGE`; ``attributes``, the named attributes to keep, in that
    order (``attributes=Black_Hair,Male``; celeba and folders with an attribute list).
    """
    base, sep, tail = name.rpartition("?")
    if not sep:
        return name, {}
    options: dict[str, Any] = {}
    for pair in tail.split("&"):
        key, eq, value = pair.partition("=")
        if key not in ("size", "attributes") or not eq:
            raise GenzooError(
                f"dataset option {pair!r} in {name!r} is not known; the options are size=N, attributes=A,B"
            )
        if key == "attributes":
            chosen = tuple(part.strip() for part in value.split(",") if part.strip())
            if not chosen:
                raise GenzooError(f"{name}: attributes= needs one or more attribute names, e.g. attributes=Male,Young")
            options[key] = chosen
            continue
        if not value.isdigit() or not SIZE_RANGE[0] <= int(value) <= SIZE_RANGE[1]:
            low, high = SIZE_RANGE
            raise GenzooError(f"{name}: size must be an integer from {low} to {high}, got {value!r}")
        options[key] = int(value)
    return base, options


def load_dataset(name: str) -> ImageDataset:
    """Load (once per process) the dataset registered as ``name``, ``folder:PATH`` or ``folders:PATH_A,PATH_B``;
    each may end in options where the dataset takes them (see :func:`split_options`)."""
    if name not in _loaded:
        check_dataset_name(name)
        base, options = split_options(name)
        if base.startswith("folder:"):
            from genzoo.data.sources import load_folder

            dataset = load_folder(base.removeprefix("folder:"), **options)
        elif base.startswith("folders:"):
            from genzoo.data.sources import load_folder_pair

            dataset = load_folder_pair(*folder_pair(base), **options)
        else:
            dataset = datasets.get(base)(**options)
        _loaded[name] = dataclasses.replace(dataset, name=name) if options else dataset
    return _loaded[name]


def dataset_names() -> list[str]:
    return [*datasets.names(), "folder:PATH", "folders:PATH_A,PATH_B"]


def folder_pair(base: str) -> tuple[str, str]:
    """``"folders:~/horses,~/zebras"`` -> the two paths (domain A, domain B)."""
    paths = [part.strip() for part in base.removeprefix("folders:").split(",")]
    if len(paths) != 2 or not all(paths):
        raise GenzooError(f"{base} must name two folders, domain A and domain B: folders:PATH_A,PATH_B")
    if paths[0] == paths[1]:
        raise GenzooError(f"{base} names the same folder twice; domains A and B need their own images")
    return paths[0], paths[1]


def check_dataset_name(name: str) -> None:
    """Fail early (before any run directory exists) on a name that is not a dataset or an option it lacks."""
    base, options = split_options(name)
    if base.startswith("folder:"):
        if not base.removeprefix("folder:"):
            raise GenzooError("folder: needs a path, e.g. folder:~/pictures")
        return
    if base.startswith("folders:"):
        folder_pair(base)
        if "attributes" in options:
            raise GenzooError(f"{base} takes no attributes option (its attributes are the domains A and B)")
        return
    factory = datasets.get(base)
    taken = inspect.signature(factory).parameters
    for key in options:
        if key not in taken:
            what = "its images have one size" if key == "size" else "it has no named attributes"
            raise GenzooError(f"dataset {base} takes no {key} option ({what})")


# importing these registers their datasets (colour photographs: cifar10, celeba; attribute views:
# mnist-attributes, fashion-attributes)
from genzoo.data import colour, domains, sources  # noqa: E402,F401
