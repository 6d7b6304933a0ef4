"""The pretrained zoo: cards that name real commands, weights checked by sha256, entries that sample at once, the
cheap likelihoods recomputed from the shipped files, and training-only modules that inference never reads."""

import hashlib
import json
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genzoo
from genzoo import zoo
from genzoo.cli import app
from genzoo.config import build_config, config_to_dict, stored_settings
from genzoo.data import check_dataset_name
from genzoo.errors import GenzooError
from genzoo.registry import models
from test_fuzz_cli import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo as recipes  # noqa: E402  (benchmarks/zoo.py: the script that rebuilds the zoo)

ENTRIES = zoo.names()
RUN_KEYS = ("data", "max_steps", "max_epochs", "batch_size", "seed")
needs_entries = pytest.mark.skipif(not ENTRIES, reason="no zoo entry is packed yet")


def genzoo_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "genzoo", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("name", ENTRIES)
def test_every_card_command_is_its_recipe_and_parses_to_a_real_model_and_dataset(name):
    card = zoo.card(name)
    recipe = recipes.RECIPES[name]
    assert card["command"] == recipe.command(card["seed"]) and card["model"] == recipe.model
    words = shlex.split(card["command"])
    assert words[:2] == ["genzoo", "train"]
    commands = app.registered_commands  # the real `train` command of the CLI parses the card's arguments
    train = next(c for c in commands if c.callback.__name__ == "train")
    import typer.main

    command = typer.main.get_command_from_info(train, pretty_exceptions_short=True, rich_markup_mode=None)
    parsed = command.make_context("train", words[2:]).params
    assert parsed["model"] in models
    check_dataset_name(parsed["data"] or models.get(parsed["model"]).default_data)
    assert card["config"]["model"] == parsed["model"] and card["config"]["seed"] == parsed["seed"]


@pytest.mark.parametrize("name", ENTRIES)
def test_every_card_command_configures_the_run_the_card_was_trained_as(name, capsys):
    """Run today, the card's command trains the card's config: its budget, data and every setting (a setting
    added since the entry was trained keeps the value that reproduces it)."""
    card = zoo.card(name)
    code, captured = run_cli([*shlex.split(card["command"])[1:], "--print-config"], capsys)
    assert code == 0, captured.err
    printed, trained = json.loads(captured.out), card["config"]
    assert {key: printed[key] for key in RUN_KEYS} == {key: trained[key] for key in RUN_KEYS}
    config_cls = models.get(card["model"]).Config
    settings = build_config(config_cls, stored_settings(config_cls, trained["settings"]))
    assert printed["settings"] == config_to_dict(settings)


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_verifies_its_weights_and_samples_finite_images(name):
    card = zoo.card(name)
    path = zoo.ZOO_DIR / card["weights"]["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["weights"]["sha256"]
    model = genzoo.load(name)
    assert model.zoo_card["name"] == name and model.run_config == card["config"]
    images = genzoo.sample_images(model, 4, card["config"].get("levels", 256))
    assert images.shape == (4, *card["config"]["image_shape"]) and torch.isfinite(images).all()
    assert card["headline"]["metric"] in card["metrics"]


def test_every_registered_model_has_an_entry_and_every_recipe_is_packed():
    assert {zoo.card(name)["model"] for name in ENTRIES} == set(models.names())
    assert set(ENTRIES) == set(recipes.RECIPES)


def test_the_whole_zoo_stays_under_60_megabytes():
    assert sum(zoo.card(name)["weights"]["bytes"] for name in ENTRIES) < 60e6


@pytest.fixture
def zoo_copy(tmp_path, monkeypatch):
    """A private copy of the shipped zoo, to damage."""
    if not ENTRIES:
        pytest.skip("no zoo entry is packed yet")
    copy = tmp_path / "zoo"
    shutil.copytree(zoo.ZOO_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(zoo, "ZOO_DIR", copy)
    return copy


def test_damaged_weights_are_refused_with_one_line(zoo_copy):
    name = ENTRIES[0]
    path = zoo_copy / f"{name}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(GenzooError, match="damaged.*sha256"):
        genzoo.load(name)


def test_weights_that_do_not_fit_the_model_are_refused(zoo_copy):
    from safetensors.torch import save

    name = ENTRIES[0]
    card = zoo.card(name)
    data = save({"unrelated": torch.zeros(3)})
    (zoo_copy / f"{name}.safetensors").write_bytes(data)
    card["weights"]["sha256"] = hashlib.sha256(data).hexdigest()
    (zoo_copy / f"{name}.json").write_text(json.dumps(card))
    with pytest.raises(GenzooError, match="do not fit"):
        genzoo.load(name)


def test_an_unknown_name_lists_the_zoo_and_says_what_a_path_would_mean(tmp_path):
    result = genzoo_cli("sample", "nosuch", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "neither a run directory" in result.stderr and all(name in result.stderr for name in ENTRIES)


def test_a_directory_of_that_name_is_a_run_directory_first(tmp_path):
    (tmp_path / "nade").mkdir()
    result = genzoo_cli("sample", "nade", cwd=tmp_path)
    assert result.returncode == 2 and "is not a run directory (no config.json)" in result.stderr


@needs_entries
def test_zoo_prints_the_table_and_a_card():
    table = genzoo_cli("zoo")
    assert table.returncode == 0 and all(name in table.stdout for name in ENTRIES)
    card = genzoo_cli("zoo", ENTRIES[0])
    assert card.returncode == 0 and json.loads(card.stdout) == zoo.card(ENTRIES[0])


@pytest.mark.parametrize("name", [n for n in ("fvsbn", "nade", "independent", "markov") if n in ENTRIES])
def test_cheap_likelihood_cards_are_recomputed_from_the_shipped_files(name):
    from genzoo.data import load_dataset
    from genzoo.data.transforms import prepare_test

    card = zoo.card(name)
    dataset = load_dataset(card["config"]["data"])
    if dataset.source != card["check"]["data_source"]:
        pytest.skip(f"the card was measured on {card['check']['data_source']}; here the data is {dataset.source}")
    model = genzoo.load(name)
    x = prepare_test(dataset.test[:1000], model.input_kind, dataset.levels)
    nll = model.evaluate(x, None, dataset.levels)["nll_nats"]
    assert nll == pytest.approx(card["check"]["nll_nats"], abs=1e-3)


TINY_SHAPES = {"cyclegan": (3, 28, 28), "stargan": (3, 28, 28), "text2image": (3, 28, 28)}


@pytest.mark.parametrize("name", [n for n in models.names() if genzoo.create(n, TINY_SHAPES.get(n, (1, 28, 28)))
                                  .training_only_modules()])  # fmt: skip
def test_sampling_never_reads_a_training_only_module(name):
    model = genzoo.create(name, TINY_SHAPES.get(name, (1, 28, 28))).eval()
    if hasattr(model, "remember_examples"):  # translation models translate the real images they kept
        model.remember_examples(torch.rand(8, *model.image_shape) * 2 - 1)
    if hasattr(model, "remember_captions"):  # text2image samples the captions it kept
        classes_and_attributes = [
            torch.arange(8) % 10,
            *(torch.arange(8) // k % s for k, s in ((1, 2), (2, 2), (1, 4), (4, 2))),
        ]
        model.remember_captions(torch.stack(classes_and_attributes, 1))
    dropped = model.training_only_modules()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if zoo._under(key, dropped) and value.is_floating_point():
                value.fill_(math.nan)
        assert torch.isfinite(model.sample(4)).all()
