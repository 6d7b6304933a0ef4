"""A user's folder of images + captions.txt: captions travel as byte-code labels that stay paired with their image,
bad captions files are one-line errors, and text2image trains on such a folder from the CLI end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genzoo.cli import app
from genzoo.data import captions as cap
from genzoo.data import sources
from genzoo.errors import GenzooError

runner = CliRunner()
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (40, 60, 230)}


def captioned_folder(root, count=12):
    """``count`` 20x20 pictures: a coloured square whose grey level is its index, captioned with both."""
    root.mkdir(exist_ok=True)
    lines = []
    for i in range(count):
        name = list(COLOURS)[i % 3]
        pixels = np.full((20, 20, 3), 10 * i, np.uint8)
        pixels[5:15, 5:15] = COLOURS[name]
        Image.fromarray(pixels).save(root / f"img{i}.png")
        lines.append(f"img{i}.png\tpicture {i} : a {name} square")
    (root / cap.CAPTIONS_FILE).write_text("\n".join(lines) + "\n")
    return root


def test_caption_codes_round_trip_and_differ_from_attribute_rows():
    sentences = ["a thin blue three", "une robe écarlate", ""]
    codes = cap.caption_codes(sentences)
    assert codes.shape == (3, cap.CAPTION_BYTES) and cap.is_caption_codes(codes)
    assert cap.decode_captions(codes) == sentences
    assert not cap.is_caption_codes(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(GenzooError, match="longer than"):
        cap.caption_codes(["x" * (cap.CAPTION_BYTES + 1)])


def test_words_outside_the_closed_vocabulary_get_stable_hashed_ids():
    words = cap.vocabulary("mnist")
    tokens = cap.encode(["a red zebra", "zebra three"], words, hashed_buckets=100)
    assert tokens[0, :2].tolist() == [words.index("a"), words.index("red")]
    assert tokens[0, 2] == tokens[1, 0] and len(words) <= tokens[0, 2] < len(words) + 100
    assert cap.encode(["zebra"], words)[0, 0] == words.index(cap.UNKNOWN)  # without buckets: unknown


def test_each_image_keeps_its_own_caption_through_the_shuffled_split(tmp_path):
    data = sources.load_folder(str(captioned_folder(tmp_path)))
    assert data.image_shape == (3, 32, 32)
    images = torch.cat([data.train, data.test])
    sentences = cap.decode_captions(torch.cat([data.train_labels, data.test_labels]))
    assert len(sentences) == 12 and len(data.test) >= 1
    for image, sentence in zip(images, sentences):
        index = int(sentence.split()[1])
        assert abs(int(image[0, 0, 0]) - 10 * index) <= 1  # the corner grey level names the file
        colour = sentence.split()[-2]
        assert image[:, 16, 16].tolist() == pytest.approx(list(COLOURS[colour]), abs=2)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: Image.new("RGB", (8, 8)).save(root / "extra.png"), "extra.png has no caption"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_bytes(b"img0.png\t\xff\xfe caption\n"), "as UTF-8 text"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_text("img0.png a caption without a tab\n"), ":1: expected"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_text("img0.png\tone\nimg0.png\ttwo\n"), "captioned twice"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_text("gone.png\ta caption\n"), "no image gone.png"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_text("\n\n"), "lists no images"),
        (lambda root: (root / cap.CAPTIONS_FILE).write_text("../outside.png\ta caption\n"), "is outside"),
    ],
)
def test_a_bad_captions_file_is_a_one_line_error_before_any_run_exists(tmp_path, damage, message):
    root = captioned_folder(tmp_path / "pictures")
    damage(root)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "text2image", "--data", f"folder:{root}", "--out", str(run)])
    assert isinstance(result.exception, GenzooError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not run.exists()


def test_text2image_trains_on_a_captioned_folder_from_the_cli(tmp_path):
    root = captioned_folder(tmp_path / "pictures", count=20)
    run = tmp_path / "run"
    tiny = {"width": 8, "latent_dim": 8, "text_dim": 8, "compressed_dim": 4, "word_dim": 8, "text_pretrain_batches": 1}
    settings = [arg for key, value in tiny.items() for arg in ("--set", f"{key}={value}")]
    result = runner.invoke(
        app,
        ["train", "text2image", "--data", f"folder:{root}", "--max-steps", "3", "--batch-size", "4",
         "--out", str(run), *settings],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_captions"] == 2 and 0 <= metrics["caption_retrieval"] <= 1
    assert (run / "samples.png").is_file() and (run / "interpolations.png").is_file()
    out = tmp_path / "green.png"
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--text", "a green square", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size[0] > 32
    # the words of the captions it trained on are recorded; others are named, with the nearest recorded ones
    result = runner.invoke(app, ["sample", str(run), "--text", "a green sqare", "--out", str(out)])
    assert isinstance(result.exception, GenzooError) and "'sqare': square" in str(result.exception)
    result = runner.invoke(app, ["sample", str(run), "--vocabulary"])
    assert result.exit_code == 0 and {"a", "green", "square", "picture"} <= set(result.output.split())
