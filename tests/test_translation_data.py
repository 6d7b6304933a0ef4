"""CycleGAN on two folders of unpaired images and StarGAN on named attributes (CelebA's layout, a folder with an
attribute list): made 64x64 RGB files in the real formats, a few training batches, translation from the command
line, the evaluation without a digit reader, and one-line errors for bad data."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.data import colour, load_dataset
from genzoo.data.attributes import read_attribute_list
from genzoo.errors import GenzooError
from genzoo.metrics.features import save_feature_net, train_feature_net
from genzoo.models.translation.base import read_image
from test_colour_data import face
from test_colour_models import made_batch
from test_fuzz_cli import run_cli

TINY = {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4}
PAPER_FIVE = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Young")


def write_images(folder, images: torch.Tensor, suffix: str = ".png", grey: bool = False) -> list[str]:
    """uint8 [N, 3, 64, 64] as 80x64 files (a centre crop gives back 64x64); grey: their first channel only."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(images):
        pixels = image[0].numpy() if grey else image.permute(1, 2, 0).numpy()
        names.append(f"{i:03d}{suffix}")
        Image.fromarray(pixels).resize((80, 64)).save(folder / names[-1])
    return names


@pytest.fixture
def two_folders(tmp_path):
    """20 colour images in horses/ (A), 24 grey ones in zebras/ (B)."""
    write_images(tmp_path / "horses", made_batch(20, 1)["images"])
    write_images(tmp_path / "zebras", made_batch(24, 2)["images"], grey=True)
    return tmp_path / "horses", tmp_path / "zebras"


def test_two_folders_are_domains_a_and_b_with_a_fixed_held_out_split(two_folders, isolated_cache):
    horses, zebras = two_folders
    name = f"folders:{horses},{zebras}?size=64"
    data = load_dataset(name)
    assert data.image_shape == (3, 64, 64)  # B is grey, A colour: both RGB
    assert data.attributes == ("A", "B") and data.name == name
    assert (len(data.train), len(data.test)) == (40, 4)  # a tenth of each folder held out
    assert data.test_labels.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]
    assert data.train_labels.sum(0).tolist() == [18, 22]
    grey_b = torch.cat([data.train[data.train_labels[:, 1] == 1], data.test[2:]])
    assert torch.equal(grey_b[:, 0], grey_b[:, 1]) and torch.equal(grey_b[:, 0], grey_b[:, 2])
    assert not torch.equal(data.train[0, 0], data.train[0, 1])  # A keeps its colour
    genzoo.data._loaded.clear()  # read the files again
    again = load_dataset(name)
    assert torch.equal(again.test, data.test) and torch.equal(again.train, data.train)
    assert "A: " in data.source and "B: " in data.source and "64x64" in data.source


def test_cyclegan_on_two_folders_trains_translates_and_evaluates(two_folders, tmp_path, isolated_cache, capsys):
    horses, zebras = two_folders
    data = f"folders:{horses},{zebras}?size=64"
    run = genzoo.train("cyclegan", data, max_steps=3, batch_size=8, out=tmp_path / "run", settings=TINY,
                       samples=4, progress=False)  # fmt: skip
    config = json.loads((run.path / "config.json").read_text())
    assert config["image_shape"] == [3, 64, 64]
    assert config["settings"]["attributes"] == ["A", "B"]
    assert (config["settings"]["domain_a"], config["settings"]["domain_b"]) == ("A", "B")
    metrics = run.metrics
    assert (metrics["a_to_b_images"], metrics["b_to_a_images"]) == (2, 2)
    assert 0 < metrics["a_to_b_cycle_l1"] < 1 and 0 < metrics["b_to_a_cycle_l1"] < 1
    assert "no feature net" in metrics["sample_metrics_skipped"]
    assert (run.path / "translations.png").is_file() and (run.path / "samples.png").is_file()

    code, captured = run_cli(["translate", str(run.path), "--input", str(horses / "000.png"), "--to", "B",
                              "--out", str(tmp_path / "to-b.png")], capsys)  # fmt: skip
    assert code == 0, captured.err
    pair = np.asarray(Image.open(tmp_path / "to-b.png"))
    assert pair.shape[1] > pair.shape[0]  # input and translation side by side
    model = genzoo.load(run.path)
    image = read_image(horses / "000.png", model.image_shape)
    with torch.no_grad():
        assert torch.equal(model.translate(image, "B"), model.generator_ab(image))
        assert torch.equal(model.translate(image, "A"), model.generator_ba(image))
    code, captured = run_cli(["translate", str(run.path), "--input", str(horses / "000.png"), "--to", "C"], capsys)
    assert code == 2 and captured.err.strip().count("\n") == 0 and "--to must be A or B" in captured.err

    # with a feature net for the folders' data, the Fréchet distance of each direction is measured
    net, card = train_feature_net(data, epochs=1, batch_size=8)
    save_feature_net(net, card)
    report = genzoo.evaluate(model)
    assert "sample_metrics_skipped" not in report and report["feature_net"].startswith(f"genzoo-features/{data}")
    assert math.isfinite(report["a_to_b_frechet_distance"]) and report["a_to_b_frechet_distance"] >= 0


ATTRIBUTE_NAMES = [*PAPER_FIVE, *(f"Attribute_{a}" for a in range(35))]


def made_celeba(folder, n: int = 12) -> torch.Tensor:
    """CelebA's files: img_align_celeba/ JPEGs (178x218), list_eval_partition.txt (8 train, 1 valid, 3 test),
    list_attr_celeba.txt (count line, 40 names, -1/1 rows); returns the attributes [n, 40] as 0/1."""
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    (folder / colour.CELEBA_IMAGES).mkdir(parents=True)
    for i, name in enumerate(names):
        face(i).save(folder / colour.CELEBA_IMAGES / name, quality=95)
    splits = [0] * (n - 4) + [1] + [2] * 3
    (folder / colour.CELEBA_PARTITION).write_text("".join(f"{name} {s}\n" for name, s in zip(names, splits)))
    values = (torch.arange(n)[:, None] + torch.arange(40)[None]) % 3 == 0
    rows = "".join(f"{name} " + " ".join("1" if v else "-1" for v in row) + "\n" for name, row in zip(names, values))
    (folder / colour.CELEBA_ATTRIBUTES).write_text(f"{n}\n{' '.join(ATTRIBUTE_NAMES)}\n{rows}")
    return values.long()


def test_celeba_keeps_the_chosen_attributes_in_their_order(tmp_path, isolated_cache, monkeypatch):
    values = made_celeba(tmp_path)
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    data = load_dataset("celeba?size=32&attributes=Young,Black_Hair")
    assert data.attributes == ("Young", "Black_Hair") and data.image_shape == (3, 32, 32)
    assert torch.equal(data.test_labels, values[9:][:, [4, 0]])
    assert load_dataset("celeba?size=32").attributes == tuple(ATTRIBUTE_NAMES)
    with pytest.raises(GenzooError, match="celeba has no attribute 'Blond' \\(did you mean Blond_Hair\\?\\)"):
        load_dataset("celeba?attributes=Blond,Male")


def test_stargan_on_celeba_with_the_papers_five_attributes(tmp_path, isolated_cache, monkeypatch, capsys):
    made_celeba(tmp_path / "data")
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path / "data"))
    data = f"celeba?attributes={','.join(PAPER_FIVE)}"
    run = genzoo.train("stargan", data, max_steps=2, batch_size=4, out=tmp_path / "run", settings=TINY,
                       samples=4, progress=False)  # fmt: skip
    config = json.loads((run.path / "config.json").read_text())
    assert config["image_shape"] == [3, 64, 64] and config["settings"]["attributes"] == list(PAPER_FIVE)
    metrics = run.metrics
    assert metrics["test_images"] == 3 and 0 < metrics["reconstruction_l1"] < 1
    assert 0 <= metrics["mean_discriminator_target_accuracy"] <= 1
    assert {f"{name}_discriminator_target_accuracy" for name in PAPER_FIVE} <= metrics.keys()
    assert "no feature net for 'celeba'" in metrics["sample_metrics_skipped"]
    model = genzoo.load(run.path)
    with torch.no_grad():  # one two-way group per attribute: D_cls has 10 logits
        assert model.discriminator(torch.zeros(1, 3, 64, 64))[1].shape == (1, 10)
    # --to sets the named attributes, "-" clears one, and the others keep what D_cls reads on the image
    x = read_image(tmp_path / "data" / colour.CELEBA_IMAGES / "000010.jpg", model.image_shape)
    with torch.no_grad():
        read = model.read_values(x)
        target = model.target_values(x, "Blond_Hair,-Male")
    assert target[0, 1] == 1 and target[0, 3] == 0 and torch.equal(target[0, [0, 2, 4]], read[0, [0, 2, 4]])

    face_file = tmp_path / "data" / colour.CELEBA_IMAGES / "000010.jpg"
    out = tmp_path / "blond-male.png"
    code, captured = run_cli(["translate", str(run.path), "--input", str(face_file), "--to", "Blond_Hair,Male",
                              "--out", str(out)], capsys)  # fmt: skip
    assert code == 0, captured.err
    assert Image.open(out).size[0] > Image.open(out).size[1]
    code, captured = run_cli(["translate", str(run.path), "--input", str(face_file), "--to", "Blond"], capsys)
    assert code == 2 and captured.err.strip().count("\n") == 0
    assert "no attribute 'Blond' (did you mean Blond_Hair?)" in captured.err


def test_cyclegan_domains_name_attributes_with_or_without_them(tmp_path, isolated_cache, monkeypatch):
    made_celeba(tmp_path)
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    data = load_dataset("celeba?size=32&attributes=Male")
    spec = genzoo.registry.models.get("cyclegan")
    settings = spec.settings_for_data(data, {"domain_a": "-Male", "domain_b": "Male", **TINY})
    model = genzoo.create("cyclegan", data.image_shape, **settings)
    labels = data.train_labels  # [8, 1]: Male or not
    assert model.members(labels, model.domain_a).tolist() == (labels[:, 0] == 0).tolist()
    assert model.members(labels, model.domain_b).tolist() == (labels[:, 0] == 1).tolist()
    with pytest.raises(GenzooError, match="needs its two domains"):
        spec.settings_for_data(data, {"domain_b": "Male"})
    with pytest.raises(GenzooError, match="domains 'Male' and 'Male' overlap"):
        genzoo.create("cyclegan", data.image_shape, **{**settings, "domain_a": "Male"})


def write_attribute_folder(folder, text: str, suffix: str = ".txt") -> None:
    write_images(folder, made_batch(10, 3)["images"], suffix=".jpg")
    (folder / f"attributes{suffix}").write_text(text)


def listed(rows: int, header: str = "Smiling Eyeglasses", separator: str = " ", absent: str = "0") -> str:
    lines = [header] + [f"{i:03d}.jpg{separator}{'1' if i % 2 else absent}{separator}{'1' if i % 3 else absent}"
                        for i in range(rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def test_stargan_on_a_folder_with_an_attribute_list(tmp_path, isolated_cache, capsys):
    folder = tmp_path / "faces"
    write_attribute_folder(folder, listed(10, "image_id,Smiling,Eyeglasses", ",", "-1"), ".csv")  # Kaggle's CSV
    data = load_dataset(f"folder:{folder}?size=64")
    assert data.attributes == ("Smiling", "Eyeglasses") and data.image_shape == (3, 64, 64)
    everything = torch.cat([data.train_labels, data.test_labels]).sum(0).tolist()
    assert everything == [5, 6]  # 5 odd files smile, 6 of 10 are not multiples of 3
    run = genzoo.train("stargan", f"folder:{folder}?size=64", max_steps=2, batch_size=4, out=tmp_path / "run",
                       settings=TINY, samples=4, progress=False)  # fmt: skip
    assert json.loads((run.path / "config.json").read_text())["settings"]["attributes"] == ["Smiling", "Eyeglasses"]
    assert math.isfinite(run.metrics["reconstruction_l1"]) and "sample_metrics_skipped" in run.metrics
    assert (run.path / "attribute_changes.png").is_file()
    code, captured = run_cli(["translate", str(run.path), "--input", str(folder / "001.jpg"), "--to", "-Smiling",
                              "--out", str(tmp_path / "out.png")], capsys)  # fmt: skip
    assert code == 0, captured.err
    pytest.importorskip("fastapi", reason="the web explorer's controls need the web extra")
    from genzoo.web.catalog import controls

    groups = controls(genzoo.load(run.path))["groups"]  # the explorer's choices: set, clear or keep each
    assert groups == {"Smiling": ["Smiling", "-Smiling"], "Eyeglasses": ["Eyeglasses", "-Eyeglasses"]}


@pytest.mark.parametrize(
    "text, message",
    [
        (listed(10).replace("001.jpg 1", "001.jpg 2"), r"attributes.txt:3: expected a file name and 2 values"),
        (listed(10).replace("001.jpg 1 1", "001.jpg 1"), r"attributes.txt:3: expected a file name and 2 values"),
        (listed(9), r"image .*009.jpg has no line in .*attributes.txt"),
        (listed(10) + "missing.jpg 1 0\n", r"attributes.txt: no image missing.jpg in"),
        (listed(10).replace("001.jpg 1 1", "001.jpg -1 1"), r"values mix -1 and 0"),
        (listed(10).replace("Smiling Eyeglasses", "Smiling Smiling"), r"attribute Smiling is named twice"),
        (listed(10).replace("Smiling Eyeglasses", "Smiling"), r"attributes.txt:2: 2 values for the 1 attribute names"),
        (listed(10) + "001.jpg 0 0\n", r"attributes.txt:12: 001.jpg is listed twice"),
    ],
    ids=["value", "count", "unlisted", "missing", "mixed", "twice", "header", "duplicate"],
)
def test_a_malformed_attribute_list_is_one_error_naming_the_file_and_line(tmp_path, isolated_cache, text, message):
    write_attribute_folder(tmp_path / "faces", text)
    with pytest.raises(GenzooError, match=message) as caught:
        load_dataset(f"folder:{tmp_path / 'faces'}")
    assert "\n" not in str(caught.value)


def test_an_attribute_list_reads_celebas_format_and_a_header_with_the_file_column(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("2\nfilename Smiling Hat\na.jpg 1 -1\nb.jpg -1 1\n")
    names, values = read_attribute_list(path)
    assert names == ["Smiling", "Hat"] and values["a.jpg"].tolist() == [1, 0] and values["b.jpg"].tolist() == [0, 1]
    path.write_text("Smiling Hat\na.jpg 1 0\n")
    assert read_attribute_list(path)[0] == ["Smiling", "Hat"]


def test_bad_translation_data_is_one_error_line(two_folders, tmp_path, isolated_cache, capsys, monkeypatch):
    horses, zebras = two_folders

    def train(*argv):
        return run_cli(["train", *argv, "--max-steps", "1", "--out", str(tmp_path / "run"), "--batch-size", "4"],
                       capsys)  # fmt: skip

    cases = [
        (["cyclegan", "--data", f"folders:{horses},{tmp_path / 'nowhere'}"], "nowhere is not a directory"),
        (["cyclegan", "--data", f"folders:{horses}"], "must name two folders"),
        (["cyclegan", "--data", f"folders:{horses},{horses}"], "names the same folder twice"),
        (["cyclegan", "--data", f"folders:{horses},{tmp_path / 'empty'}"], "has no images"),
        (["cyclegan", "--data", f"folders:{horses},{zebras}", "--set", "attributes=X,Y"], "attributes X,Y are not"),
        (["cyclegan", "--data", f"folders:{horses},{zebras}", "--set", "domain_a=C"], "no attribute 'C'"),
        (["stargan", "--data", f"folder:{horses}"], "stargan cannot translate folder:"),
        (["stargan", "--data", f"folder:{horses}?attributes=Male"], "has no attributes.txt or attributes.csv"),
    ]
    (tmp_path / "empty").mkdir()
    made_celeba(tmp_path / "celeba")
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path / "celeba"))
    cases += [
        (
            ["stargan", "--data", "celeba?attributes=Male,Blnd_Hair"],
            "no attribute 'Blnd_Hair' (did you mean Blond_Hair?)",
        ),
        (["cyclegan", "--data", "celeba?attributes=Male,Young,Blond_Hair"], "needs its two domains"),
    ]
    for argv, message in cases:
        code, captured = train(*argv)
        assert code == 2, (argv, captured.err)
        assert captured.err.startswith("error: ") and captured.err.strip().count("\n") == 0, captured.err
        assert message in captured.err, (argv, captured.err)
        assert not (tmp_path / "run").exists()
