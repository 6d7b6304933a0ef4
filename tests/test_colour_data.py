"""CIFAR-10 and CelebA read from made files in the real layouts, and folders at a chosen size (``?size=N``)."""

import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import check_dataset_name, colour, load_dataset, split_options
from genzoo.data.files import md5sum
from genzoo.errors import DataUnavailable, GenzooError


def cifar_records(labels: list[int], first_value: int) -> bytes:
    """Records of 1 label byte + 3 colour planes of 1,024 bytes; plane c of record i holds first_value + 3 i + c."""
    out = b""
    for i, label in enumerate(labels):
        planes = [bytes([(first_value + 3 * i + c) % 256]) * 1024 for c in range(3)]
        out += bytes([label]) + b"".join(planes)
    return out


def write_cifar_archive(path, records: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in records.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def made_cifar(folder) -> dict[str, bytes]:
    records = {f"data_batch_{i}.bin": cifar_records([i, 10 - i], 10 * i) for i in range(1, 6)}
    records["test_batch.bin"] = cifar_records([7, 3, 0], 200)
    write_cifar_archive(folder / colour.CIFAR10_FILE, records)
    return records


def test_cifar10_is_read_from_the_binary_archive_in_the_data_directory(tmp_path, isolated_cache, monkeypatch):
    made_cifar(tmp_path)
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    data = load_dataset("cifar10")
    assert data.image_shape == (3, 32, 32) and data.levels == 256 and "binary version" in data.source
    assert data.train_labels.tolist() == [1, 9, 2, 8, 3, 7, 4, 6, 5, 5]  # batches 1..5 in order
    assert data.test_labels.tolist() == [7, 3, 0]
    # planes are red, green, blue, each row by row: record 1 of batch 2 holds 23, 24, 25
    assert data.train[3, :, 0, 0].tolist() == [23, 24, 25] and torch.all(data.train[3, 2] == 25)
    assert data.test.dtype == torch.uint8 and data.test[2, 0, 31, 31] == 206


def test_cifar10_corrupt_archive_is_one_error_naming_the_file(tmp_path, isolated_cache, monkeypatch):
    records = made_cifar(tmp_path)
    write_cifar_archive(tmp_path / colour.CIFAR10_FILE, {**records, "data_batch_3.bin": b"\x01" * 3000})
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(GenzooError, match="data_batch_3.bin: 3000 bytes is not a whole number"):
        load_dataset("cifar10")
    del records["test_batch.bin"]
    write_cifar_archive(tmp_path / colour.CIFAR10_FILE, records)
    with pytest.raises(GenzooError, match="no cifar-10-batches-bin/test_batch.bin"):
        load_dataset("cifar10")
    (tmp_path / colour.CIFAR10_FILE).write_bytes(b"not gzip")
    with pytest.raises(GenzooError, match="corrupt data file"):
        load_dataset("cifar10")


def test_cifar10_offline_without_the_file_says_where_to_put_it(isolated_cache):
    with pytest.raises(DataUnavailable, match="cifar-10-binary.tar.gz is not available offline.*GENZOO_DATA_DIR"):
        load_dataset("cifar10")


def test_cifar10_download_is_checked_against_the_md5_and_cached(tmp_path, isolated_cache, monkeypatch):
    remote = tmp_path / "remote"
    remote.mkdir()
    made_cifar(remote)
    monkeypatch.delenv("GENZOO_OFFLINE")
    monkeypatch.setattr(colour, "CIFAR10_URL", (remote / colour.CIFAR10_FILE).as_uri())
    with pytest.raises(DataUnavailable, match="checksum mismatch"):  # the published md5 of the real archive
        load_dataset("cifar10")
    monkeypatch.setattr(colour, "CIFAR10_MD5", md5sum(remote / colour.CIFAR10_FILE))
    assert len(load_dataset("cifar10").train) == 10
    assert (isolated_cache / "cifar10" / colour.CIFAR10_FILE).is_file()


def face(index: int) -> Image.Image:
    """A 178x218 "aligned face": 10 red rows on top, 10 blue rows below, the middle a grey level of ``index``;
    a centre crop to 178x178 keeps only the middle."""
    pixels = np.full((218, 178, 3), 10 * index, np.uint8)
    pixels[:10] = (255, 0, 0)
    pixels[-10:] = (0, 0, 255)
    return Image.fromarray(pixels)


def write_celeba_lists(folder, n: int = 7) -> list[str]:
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    splits = [0, 0, 0, 0, 1, 2, 2][:n]
    (folder / colour.CELEBA_PARTITION).write_text("".join(f"{name} {s}\n" for name, s in zip(names, splits)))
    attribute_names = [f"Attribute_{a}" for a in range(40)]
    rows = [" ".join([f"{1 if (i + a) % 3 == 0 else -1:2d}" for a in range(40)]) for i in range(n)]
    (folder / colour.CELEBA_ATTRIBUTES).write_text(
        f"{n}\n{' '.join(attribute_names)}\n" + "".join(f"{name} {row}\n" for name, row in zip(names, rows))
    )
    return names


def check_made_celeba(data, size: int) -> None:
    assert data.image_shape == (3, size, size)
    assert (len(data.train), len(data.valid), len(data.test)) == (4, 1, 2)
    assert data.train_labels.shape == (4, 40) and set(data.train_labels.unique().tolist()) == {0, 1}
    assert data.test_labels[0].tolist() == [1 if (5 + a) % 3 == 0 else 0 for a in range(40)]  # file 000006.jpg
    # centre crop, no stretch: neither the red top nor the blue bottom reaches the picture (JPEG error aside)
    middle = data.test[1].float()  # 000007.jpg, grey level 60
    assert (middle - 60).abs().max() < 8


def test_celeba_is_read_from_the_image_folder_and_lists(tmp_path, isolated_cache, monkeypatch):
    names = write_celeba_lists(tmp_path)
    (tmp_path / "celeba" / colour.CELEBA_IMAGES).mkdir(parents=True)
    for i, name in enumerate(names):
        face(i).save(tmp_path / "celeba" / colour.CELEBA_IMAGES / name, quality=95)
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    data = load_dataset("celeba")
    check_made_celeba(data, 64)
    assert data.name == "celeba" and "centre crop resized to 64x64" in data.source
    small = load_dataset("celeba?size=24")
    check_made_celeba(small, 24)
    assert small.name == "celeba?size=24"
    # the resized images are cached: a second process needs neither the folder nor the archive
    for name in names:
        (tmp_path / "celeba" / colour.CELEBA_IMAGES / name).unlink()
    assert torch.equal(colour.celeba(size=24).train, small.train)


def test_celeba_is_read_from_the_official_zip_archive(tmp_path, isolated_cache, monkeypatch):
    names = write_celeba_lists(tmp_path)
    with zipfile.ZipFile(tmp_path / colour.CELEBA_ZIP, "w") as archive:
        for i, name in enumerate(names):
            buffer = io.BytesIO()
            face(i).save(buffer, "JPEG", quality=95)
            archive.writestr(f"{colour.CELEBA_IMAGES}/{name}", buffer.getvalue())
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    check_made_celeba(load_dataset("celeba?size=32"), 32)


def test_celeba_errors_name_the_file(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailable, match="list_eval_partition.txt is not available offline"):
        load_dataset("celeba")
    names = write_celeba_lists(tmp_path)
    with pytest.raises(DataUnavailable, match="img_align_celeba.zip is not available offline"):
        load_dataset("celeba")
    (tmp_path / colour.CELEBA_IMAGES).mkdir()
    with pytest.raises(GenzooError, match=f"image .*{names[0]} does not exist"):
        load_dataset("celeba")
    (tmp_path / colour.CELEBA_ATTRIBUTES).write_text("1\nA B\n000001.jpg 1 0\n")
    with pytest.raises(GenzooError, match="corrupt data file .*list_attr_celeba.txt"):
        load_dataset("celeba")


def test_dataset_options_are_parsed_and_checked():
    assert split_options("folder:/a?b/c?size=64") == ("folder:/a?b/c", {"size": 64})
    assert split_options("mnist") == ("mnist", {})
    for bad, message in [
        ("celeba?size=4", "size must be an integer from 8 to 512"),
        ("celeba?size=big", "size must be an integer"),
        ("celeba?width=64", "option 'width=64' .* is not known"),
        ("mnist?size=64", "dataset mnist takes no size option"),
        ("nothing?size=64", "unknown dataset 'nothing'"),
    ]:
        with pytest.raises(GenzooError, match=message):
            check_dataset_name(bad)


@pytest.mark.parametrize("size", [28, 32, 64, 128])
def test_folder_at_a_chosen_size_keeps_the_aspect_by_a_centre_crop(tmp_path, size):
    for i in range(3):  # wide pictures: a red band left and right of a green square
        pixels = np.zeros((60, 100, 3), np.uint8)
        pixels[:, :20], pixels[:, 20:80, 1], pixels[:, 80:] = (255, 0, 0), 100 + i, (255, 0, 0)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}?size={size}")
    assert data.image_shape == (3, size, size) and f"{size}x{size}" in data.source
    everything = torch.cat([data.train, data.test])
    assert everything[:, 0].max() == 0 and everything[:, 2].max() == 0  # no red band left after the crop
    assert set(everything[:, 1].flatten().tolist()) <= {100, 101, 102}
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(2):
        Image.fromarray(np.full((10, 10), 30 * i, np.uint8)).save(grey / f"{i}.png")
    assert load_dataset(f"folder:{grey}?size={size}").image_shape == (1, size, size)
