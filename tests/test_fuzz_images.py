"""Fuzzed image files (shapes, pixel types, formats, corruption): every reader and every command that takes images
ends in success or one `error:` line naming the file, never a traceback or a half-written run directory."""

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import genzoo
from genzoo.data.images import read_image_bytes, read_image_file
from genzoo.errors import GenzooError
from test_fuzz_cli import run_cli

MODES = ["1", "L", "P", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}
DAMAGE = ["none", "none", "truncated", "garbage", "empty", "wrong suffix"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def image_files(draw, directory: Path, name: str = "image"):
    """An image of random size, pixel type and format written to ``directory``, perhaps damaged."""
    height, width = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    mode, image_format = draw(st.sampled_from(MODES)), draw(st.sampled_from(list(FORMATS)))
    seed = draw(st.integers(0, 2**16))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    picture = Image.fromarray(pixels, "RGBA").convert(mode) if mode not in ("I;16", "I", "F") else None
    if mode == "I;16":
        picture = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        picture = Image.fromarray(
            pixels[..., 0].astype(np.int32 if mode == "I" else np.float32) / (255 if mode == "F" else 1)
        )
    buffer = io.BytesIO()
    try:
        picture.save(buffer, format=image_format)
    except (OSError, ValueError, KeyError):
        assume(False)  # PIL cannot write this pixel type in this format
    data = buffer.getvalue()
    damage = draw(st.sampled_from(DAMAGE))
    event(f"{image_format} {mode} {damage}")
    suffix = FORMATS[image_format]
    if damage == "truncated":
        data = data[: draw(st.integers(1, max(1, len(data) - 1)))]
    elif damage == "garbage":
        data = draw(st.binary(min_size=1, max_size=200))
    elif damage == "empty":
        data = b""
    elif damage == "wrong suffix":
        suffix = ".png" if suffix != ".png" else ".jpg"
    path = directory / f"{name}{suffix}"
    path.write_bytes(data)
    return path, damage


def one_error_line(err: str, name: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1 and name in err and "Traceback" not in err


@FUZZ
@given(
    data=st.data(),
    mode=st.sampled_from(["L", "RGB"]),
    size=st.none() | st.tuples(st.integers(1, 40), st.integers(1, 40)),
)
def test_read_image_file_returns_8_bit_pixels_or_one_error_naming_the_file(tmp_path_factory, data, mode, size):
    path, damage = data.draw(image_files(tmp_path_factory.mktemp("img")))
    try:
        pixels = read_image_file(path, mode, size)
    except GenzooError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert damage in ("none", "wrong suffix", "truncated")  # PIL may still decode a file cut after its pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == len(mode)
    if size is not None:
        assert pixels.shape[:2] == size


def test_pixel_types_are_scaled_to_8_bit_not_clipped(tmp_path):
    grey = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit PNG
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float.tif")  # float in [0, 1]
    for name in ("grey.png", "deep.png", "float.tif"):
        assert np.array_equal(read_image_file(tmp_path / name, "L")[..., 0], grey), name
    assert np.array_equal(read_image_file(tmp_path / "grey.png", "RGB"), np.repeat(grey[..., None], 3, 2))


def test_oversized_and_unsupported_files_are_refused_by_name(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "wide.png")
    monkeypatch.setattr("genzoo.data.images.MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(GenzooError, match=r"wide.png has 40x30 pixels"):
        read_image_file(tmp_path / "wide.png", "L")
    monkeypatch.setattr("genzoo.data.images.MAX_IMAGE_BYTES", 10)
    with pytest.raises(GenzooError, match="wide.png is larger than"):
        read_image_file(tmp_path / "wide.png", "L")
    monkeypatch.undo()
    (tmp_path / "notes.png").write_text("%PDF-1.4 not an image")
    with pytest.raises(GenzooError, match="notes.png is not an image of a supported type"):
        read_image_file(tmp_path / "notes.png", "L")


def test_uploaded_bytes_are_read_as_files_are_under_their_own_limits(tmp_path):
    grey = np.arange(0, 256, 4, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    data = (tmp_path / "grey.png").read_bytes()
    assert np.array_equal(
        read_image_bytes(data, "upload", "L", (4, 4)), read_image_file(tmp_path / "grey.png", "L", (4, 4))
    )
    with pytest.raises(GenzooError, match="image upload is larger than"):
        read_image_bytes(data, "upload", "L", max_bytes=len(data) - 1)
    with pytest.raises(GenzooError, match="image upload has 8x8 pixels, more than 63"):
        read_image_bytes(data, "upload", "L", max_pixels=63)
    with pytest.raises(GenzooError, match="upload is not an image of a supported type"):
        read_image_bytes(b"%PDF-1.4 not an image", "upload", "L")


@FUZZ
@given(data=st.data())
def test_training_on_a_fuzzed_image_folder_succeeds_or_fails_in_one_line(tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("folder")
    files = [data.draw(image_files(folder, f"image{i}")) for i in range(3)]
    out = tmp_path_factory.mktemp("runs") / "run"
    argv = ["train", "independent", "--data", f"folder:{folder}", "--max-steps", "1", "--batch-size", "1"]
    code, captured = run_cli([*argv, "--out", str(out)], capsys)
    event(f"exit {code}")
    if code == 0:
        assert (out / "metrics.json").is_file()
    else:
        assert code == 2 and one_error_line(captured.err, str(folder)), captured.err
        assert not out.exists()
    if all(damage == "none" for _, damage in files):
        assert code == 0, captured.err


@pytest.fixture(scope="module")
def puzzle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("puzzle") / "run"
    genzoo.train("puzzlegan", data="mnist", max_steps=1, batch_size=8, out=out, progress=False,
                 settings={"width": 8, "eval_samples": 20})  # fmt: skip
    return out


@FUZZ
@given(data=st.data())
def test_puzzle_patches_from_fuzzed_files_succeed_or_fail_in_one_line(tmp_path_factory, capsys, puzzle_run, data):
    folder = tmp_path_factory.mktemp("patches")
    files = [data.draw(image_files(folder, f"patch{i}")) for i in range(3)]
    out = folder / "samples.png"
    code, captured = run_cli(
        ["sample", str(puzzle_run), "--patches", ",".join(str(p) for p, _ in files), "--out", str(out)], capsys
    )
    if code == 0:
        assert out.is_file()
    else:
        assert code == 2 and one_error_line(captured.err, "patch"), captured.err
    if all(damage == "none" for _, damage in files):
        assert code == 0, captured.err


@pytest.fixture(scope="module")
def translation_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cyclegan") / "run"
    settings = {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4, "eval_images": 20}
    genzoo.train("cyclegan", data="mnist-attributes", max_steps=1, batch_size=8, out=out, progress=False,
                 settings=settings)  # fmt: skip
    return out


@FUZZ
@given(data=st.data())
def test_translating_a_fuzzed_file_succeeds_or_fails_in_one_line(tmp_path_factory, capsys, translation_run, data):
    path, damage = data.draw(image_files(tmp_path_factory.mktemp("input")))
    out = path.with_name("translated.png")
    code, captured = run_cli(
        ["translate", str(translation_run), "--input", str(path), "--to", "B", "--out", str(out)], capsys
    )
    if code == 0:
        assert out.is_file()
    else:
        assert code == 2 and one_error_line(captured.err, path.name), captured.err
    if damage == "none":
        assert code == 0, captured.err
