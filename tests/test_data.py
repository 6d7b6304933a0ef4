"""The data layer: splits, file formats, the checksummed downloader, transforms and exact-resume batching."""

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import load_dataset, sources
from genzoo.data.files import fetch, md5sum
from genzoo.data.stream import BatchStream
from genzoo.data.transforms import prepare, prepare_test, random_shift
from genzoo.errors import DataUnavailable, GenzooError


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_embedded_mnist_is_split_stratified_and_disjoint():
    data = load_dataset("mnist")
    assert data.train.shape == (4000, 1, 28, 28) and data.test.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [100] * 10
    assert torch.bincount(data.train_labels).tolist() == [400] * 10
    train_rows = {bytes(img.numpy()) for img in data.train}
    assert not any(bytes(img.numpy()) in train_rows for img in data.test)


def test_read_idx_round_trip_and_corrupt_file(tmp_path):
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    write_idx(tmp_path / "ok-idx3-ubyte.gz", images)
    np.testing.assert_array_equal(sources.read_idx(tmp_path / "ok-idx3-ubyte.gz"), images)
    (tmp_path / "bad-idx3-ubyte.gz").write_bytes(b"not a gzip file at all")
    with pytest.raises(GenzooError, match="corrupt data file .*bad-idx3"):
        sources.read_idx(tmp_path / "bad-idx3-ubyte.gz")


def test_full_mnist_is_read_from_the_data_directory(tmp_path, isolated_cache, monkeypatch):
    rng = np.random.default_rng(0)
    for prefix, n in [("train", 6), ("t10k", 3)]:
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    data = load_dataset("mnist")
    assert data.source.startswith("MNIST 60k/10k") and data.train.shape == (6, 1, 28, 28) and len(data.test) == 3


def test_mnist_falls_back_to_the_embedded_digits_offline(isolated_cache):
    assert load_dataset("mnist").source.startswith("MNIST 5k embedded")


def test_fetch_downloads_verifies_and_caches(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.delenv("GENZOO_OFFLINE")
    remote = tmp_path / "remote.bin"
    remote.write_bytes(b"payload" * 1000)
    path = fetch("file.bin", [remote.as_uri()], md5sum(remote), "things")
    assert path == isolated_cache / "things" / "file.bin" and path.read_bytes() == remote.read_bytes()
    with pytest.raises(DataUnavailable, match="checksum mismatch"):
        fetch("other.bin", [remote.as_uri()], "0" * 32, "things")
    assert not (isolated_cache / "things" / "other.bin").exists()
    assert list((isolated_cache / "things").iterdir()) == [path]  # no partial files left behind


def test_fetch_offline_says_what_to_do(isolated_cache):
    with pytest.raises(DataUnavailable, match="GENZOO_DATA_DIR"):
        fetch("missing.bin", ["http://example.invalid/missing.bin"], None, "x")


def test_standard_binarized_mnist_is_checksummed(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    fake = {split: np.zeros((2, 98), np.uint8) for split in sources.BINARIZED_SHA256}
    np.savez(tmp_path / sources.BINARIZED_FILE, **fake)
    with pytest.raises(GenzooError, match="does not match the standard binarized MNIST"):
        load_dataset("binarized-mnist")


def test_binarized_mnist_offline_is_a_seeded_binarization_of_the_embedded_digits(isolated_cache):
    data = load_dataset("binarized-mnist")
    assert data.levels == 2 and "static Bernoulli binarization" in data.source
    assert set(torch.unique(data.test).tolist()) == {0, 1}
    assert 0.1 < data.test.float().mean() < 0.16


@pytest.mark.skipif(not sources.FASHION_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_system_package():
    data = load_dataset("fashion-mnist")
    assert data.train.shape == (60000, 1, 28, 28) and data.test.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10


def test_fashion_mnist_missing_offline_is_one_clear_error(isolated_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "FASHION_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(DataUnavailable, match="not available offline"):
        load_dataset("fashion-mnist")


def test_folder_dataset_resizes_labels_and_reports_bad_images(tmp_path):
    for label in ["cats", "dogs"]:
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.fromarray(np.full((40, 30, 3), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.image_shape == (1, 32, 32)  # grey pictures stored as RGB are detected as grey
    assert len(data.train) + len(data.test) == 10 and set(data.train_labels.tolist()) <= {0, 1}
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(GenzooError, match="broken.png"):
        sources.load_folder(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenzooError, match="has no images"):
        sources.load_folder(str(tmp_path / "empty"))


def test_transforms():
    images = torch.tensor([0, 1, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    signed = prepare(images, "signed", 256)
    assert signed.min() == -1 and signed.max() == 1
    deq = prepare(images, "dequantized", 256, torch.Generator().manual_seed(0))
    assert torch.all((deq * 256).floor() == images.float())
    assert torch.equal(prepare_test(images, "binary", 256), prepare_test(images, "binary", 256))
    many = torch.full((20000,), 64, dtype=torch.uint8)
    assert prepare(many, "binary", 256).mean().item() == pytest.approx(64 / 255, abs=0.015)
    assert torch.equal(prepare(images, "binary", 2), images.float())


def test_batch_stream_is_a_pure_function_of_the_batch_index():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    labels = torch.arange(50)
    stream = BatchStream(images, labels, 8, "unit", 256, seed=3)
    assert len(stream) == 6
    first_two_epochs = [b for _ in range(2) for b in stream]
    assert len(first_two_epochs) == 12
    epoch_labels = torch.cat([b["y"] for b in first_two_epochs[:6]])
    assert len(set(epoch_labels.tolist())) == 48  # no repeats within an epoch
    resumed = BatchStream(images, labels, 8, "unit", 256, seed=3)
    resumed.load_state_dict({"next_batch": 9})
    rest = list(resumed)
    assert len(rest) == 3
    for a, b in zip(rest, first_two_epochs[9:]):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    assert not torch.equal(first_two_epochs[0]["y"], first_two_epochs[6]["y"])  # each epoch is reshuffled


@pytest.mark.parametrize("mode", ["constant", "replicate"])
def test_random_shift_translates_each_image_and_passes_gradients_back(mode):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(16, 2, 9, 7, generator=g, requires_grad=True)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(1), mode)
    dy, dx = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(1))  # the offsets it drew
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode=mode)
    for i in range(16):  # image i is its padded self cropped at (dy, dx): a translation by (2 - dy, 2 - dx)
        torch.testing.assert_close(shifted[i], padded[i, :, dy[i] : dy[i] + 9, dx[i] : dx[i] + 7])
    assert len({(int(a), int(b)) for a, b in zip(dy, dx)}) > 1  # offsets differ between images
    (shifted * torch.arange(shifted.numel()).view_as(shifted)).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # differentiable, as a GAN needs
