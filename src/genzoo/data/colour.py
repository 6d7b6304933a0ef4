"""Colour photographs of the papers: CIFAR-10 (32x32) and CelebA (aligned and cropped faces, 64x64 by default).

Both are found like every downloaded set (:mod:`genzoo.data.files`): the data directories, then the cache, then a
download into the cache checked against the published MD5.

- ``cifar10``: the binary version, ``cifar-10-binary.tar.gz`` (never the pickled Python version, whose loading
  would run pickled code). Inside, ``cifar-10-batches-bin/data_batch_1.bin`` .. ``5`` (50,000 training images) and
  ``test_batch.bin`` (10,000) hold records of 3,073 bytes: the label (0-9), then 1,024 red, 1,024 green and 1,024
  blue values, each plane row by row.
- ``celeba``: ``img_align_celeba/`` (202,599 aligned and cropped 178x218 JPEGs; the folder, e.g. as Kaggle ships
  it, or the official ``img_align_celeba.zip``), ``list_eval_partition.txt`` (``000001.jpg 0`` lines: 0 train,
  1 validation, 2 test) and ``list_attr_celeba.txt`` (a count line, a line of the 40 attribute names, then
  ``000001.jpg -1 1 ...`` lines). Images are centre-cropped to a square (178x178) and resized to ``size``
  (``celeba?size=128``), as the DCGAN and Progressive GAN CelebA setups do; labels are the 40 attributes as 0/1
  [N, 40], or those chosen (``celeba?attributes=Black_Hair,Male``, :mod:`genzoo.data.attributes`). Decoding
  200k JPEGs takes minutes, so the resized images are kept in the cache (``celeba/img_align_celeba-SIZE.npy``)
  and read from there afterwards. The official files sit on Google Drive,
  which answers large downloads with a confirmation page: that download fails its checksum and the error says to
  place the files in a data directory.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genzoo.data import ImageDataset
from genzoo.data.attributes import attribute_columns, read_attribute_list, select_attributes
from genzoo.data.files import cache_dir, data_dirs, fetch
from genzoo.data.images import decode_image, read_image_file
from genzoo.errors import GenzooError
from genzoo.registry import datasets

CIFAR10_FILE = "cifar-10-binary.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_RECORD = 1 + 3 * 32 * 32

CELEBA_IMAGES = "img_align_celeba"
CELEBA_ZIP = "img_align_celeba.zip"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_MD5 = {  # published with the files (and in torchvision's CelebA loader)
    CELEBA_ZIP: "00d2c5bc6d35e252742224ab0c1e8fcb",
    CELEBA_PARTITION: "d32c9cbf5e040fd4025c592c306e6668",
    CELEBA_ATTRIBUTES: "75e246fa4810816ffd6ee81facbd244c",
}
CELEBA_DRIVE_IDS = {
    CELEBA_ZIP: "0B7EVK8r0v71pZjFTYXZWM3FlRnM",
    CELEBA_PARTITION: "0B7EVK8r0v71pY0NSMzRuSXJEVkk",
    CELEBA_ATTRIBUTES: "0B7EVK8r0v71pblRyaVFSWGxPY0U",
}
DRIVE_URL = "https://drive.google.com/uc?export=download&id={}"
CELEBA_SIZE = 64


def read_cifar10_records(data: bytes, origin: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 binary batch -> images uint8 [N, 3, 32, 32] and labels long [N]."""
    if not data or len(data) % CIFAR10_RECORD:
        raise GenzooError(f"corrupt data file {origin}: {len(data)} bytes is not a whole number of 3,073-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise GenzooError(f"corrupt data file {origin}: label {labels.max()} outside 0-9")
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def read_cifar10_archive(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels) from ``cifar-10-binary.tar.gz``."""
    try:
        with tarfile.open(path, "r:gz") as archive:

            def read(name: str) -> tuple[torch.Tensor, torch.Tensor]:
                try:
                    member = archive.extractfile(f"{CIFAR10_FOLDER}/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise GenzooError(f"corrupt data file {path}: no {CIFAR10_FOLDER}/{name} in the archive")
                return read_cifar10_records(member.read(), f"{path}:{name}")

            train = [read(name) for name in CIFAR10_TRAIN]
            test_images, test_labels = read(CIFAR10_TEST)
    except (OSError, EOFError, tarfile.TarError, zlib.error) as err:
        raise GenzooError(f"corrupt data file {path}: {err}") from None
    train_images = torch.cat([images for images, _ in train])
    train_labels = torch.cat([labels for _, labels in train])
    return train_images, train_labels, test_images, test_labels


@datasets.register("cifar10")
def cifar10() -> ImageDataset:
    """CIFAR-10 (Krizhevsky 2009): 50,000 / 10,000 colour images of 10 classes, 32x32, from the binary version."""
    path = fetch(CIFAR10_FILE, [CIFAR10_URL], CIFAR10_MD5, "cifar10")
    train, train_labels, test, test_labels = read_cifar10_archive(path)
    return ImageDataset("cifar10", train, test, train_labels, test_labels, 256, "CIFAR-10 50k/10k (binary version)")


def _celeba_file(name: str) -> Path:
    return fetch(name, [DRIVE_URL.format(CELEBA_DRIVE_IDS[name])], CELEBA_MD5[name], "celeba")


def _read_lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise GenzooError(f"corrupt data file {path}: {err}") from None


def read_celeba_lists(partition: Path, attributes: Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(file names, split per file [N] in 0/1/2, the 40 attribute names, attributes [N, 40] as 0/1)."""
    rows = _read_lines(partition)
    if not rows or any(len(row) != 2 or row[1] not in ("0", "1", "2") for row in rows):
        raise GenzooError(f"corrupt data file {partition}: expected 'NAME.jpg 0|1|2' lines")
    names = [row[0] for row in rows]
    splits = np.array([int(row[1]) for row in rows])
    try:
        attribute_names, by_name = read_attribute_list(attributes)
    except GenzooError as err:
        raise GenzooError(f"corrupt data file {err}") from None
    try:
        values = np.stack([by_name[name] for name in names])
    except KeyError as err:
        raise GenzooError(f"corrupt data file {attributes}: no attributes for {err.args[0]}") from None
    return names, splits, attribute_names, values


def _image_folder() -> Path | None:
    for root in [*data_dirs(), cache_dir()]:
        for candidate in (root / "celeba" / CELEBA_IMAGES, root / CELEBA_IMAGES):
            if candidate.is_dir():
                return candidate
    return None


def _celeba_reader(size: int) -> Callable[[str], np.ndarray]:
    """A function from a file name (``000001.jpg``) to its [size, size, 3] pixels: from the image folder when one
    is present, else from the zip archive."""
    folder = _image_folder()
    if folder is not None:
        return lambda name: read_image_file(folder / name, "RGB", (size, size), crop=True)
    path = _celeba_file(CELEBA_ZIP)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise GenzooError(f"corrupt data file {path}: {err}") from None

    def read(name: str) -> np.ndarray:
        try:
            data = archive.read(f"{CELEBA_IMAGES}/{name}")
        except KeyError:
            raise GenzooError(f"corrupt data file {path}: no {CELEBA_IMAGES}/{name} in the archive") from None
        except (OSError, zipfile.BadZipFile, zlib.error) as err:
            raise GenzooError(f"corrupt data file {path}: {err}") from None
        return decode_image(io.BytesIO(data), f"{path}:{name}", "RGB", (size, size), crop=True)

    return read


def celeba_images(names: list[str], size: int) -> np.ndarray:
    """uint8 [N, size, size, 3] for ``names``, from the cache of resized images when it holds them."""
    cached = cache_dir() / "celeba" / f"{CELEBA_IMAGES}-{size}.npy"
    if cached.is_file():
        images = np.load(cached, mmap_mode="r")
        if images.shape == (len(names), size, size, 3):
            return np.asarray(images)
    read = _celeba_reader(size)
    with ThreadPoolExecutor() as pool:  # PIL decodes with the GIL released
        images = np.stack(list(pool.map(read, names)))
    from genzoo.runs import atomic_open

    with atomic_open(cached) as out:
        np.save(out, images)
    return images


@datasets.register("celeba")
def celeba(size: int = CELEBA_SIZE, attributes: tuple[str, ...] | None = None) -> ImageDataset:
    """CelebA (Liu et al. 2015), aligned and cropped: 162,770 / 19,867 / 19,962 faces (the official partition),
    centre-cropped and resized to ``size`` (64 by default), with their 40 binary attributes as labels, or the
    ``attributes`` chosen (``celeba?attributes=Black_Hair,Blond_Hair,Brown_Hair,Male,Young``, StarGAN's five)."""
    partition, attribute_list = _celeba_file(CELEBA_PARTITION), _celeba_file(CELEBA_ATTRIBUTES)
    names, splits, attribute_names, values = read_celeba_lists(partition, attribute_list)
    if attributes is not None:  # a wrong name fails before minutes of decoding
        attribute_columns(attributes, attribute_names, "celeba")
    images = torch.from_numpy(celeba_images(names, size)).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(values)
    part = {split: torch.from_numpy(np.flatnonzero(splits == split)) for split in (0, 1, 2)}
    source = f"CelebA aligned and cropped, official partition, centre crop resized to {size}x{size}"
    dataset = ImageDataset(
        "celeba",
        images[part[0]],
        images[part[2]],
        labels[part[0]],
        labels[part[2]],
        256,
        source,
        valid=images[part[1]],
        attributes=tuple(attribute_names),
    )
    return select_attributes(dataset, attributes)
