"""Datasets by name, held in memory as uint8 tensors [N, C, H, W]; see ``genzoo list``.

``load_dataset("mnist")``; ``load_dataset("folder:/path/to/images")`` for a user's own images.
"""

from __future__ import annotations

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


def load_dataset(name: str) -> ImageDataset:
    """Load (once per process) the dataset registered as ``name``, or ``folder:PATH``."""
    if name not in _loaded:
        if name.startswith("folder:"):
            from genzoo.data.sources import load_folder

            _loaded[name] = load_folder(name.removeprefix("folder:"))
        else:
            _loaded[name] = datasets.get(name)()
    return _loaded[name]


def dataset_names() -> list[str]:
    return [*datasets.names(), "folder:PATH"]


def check_dataset_name(name: str) -> None:
    """Fail early (before any run directory exists) on a name that is not a dataset."""
    if not name.startswith("folder:"):
        datasets.get(name)
    elif not name.removeprefix("folder:"):
        raise GenzooError("folder: needs a path, e.g. folder:~/pictures")


# importing these registers their datasets (attribute views: mnist-attributes, fashion-attributes)
from genzoo.data import domains, sources  # noqa: E402,F401
