"""Run-directory files are replaced atomically: a failure while writing leaves the previous good file."""

import pytest
import torch

import genzoo
from genzoo import runs
from genzoo.config import config_to_dict, stored_settings
from genzoo.errors import GenzooError
from genzoo.models.adversarial.infogan import InfoGANConfig


def test_a_failure_while_writing_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    runs.write_json(target, {"nll_nats": 1.0})
    with pytest.raises(RuntimeError), runs.atomic_open(target) as out:
        out.write(b'{"nll_nats": ')
        raise RuntimeError("disk died")
    assert runs.read_json(target) == {"nll_nats": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_weights_round_trip_through_safetensors_and_mismatch_is_reported(tmp_path):
    model = genzoo.create("nade", (1, 4, 4), hidden=5)
    runs.save_weights(model, tmp_path / "w.safetensors")
    other = genzoo.create("nade", (1, 4, 4), hidden=5)
    runs.load_weights(other, tmp_path / "w.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value)
    wider = genzoo.create("nade", (1, 4, 4), hidden=6)
    with pytest.raises(GenzooError, match="does not match the model"):
        runs.load_weights(wider, tmp_path / "w.safetensors")


def test_new_run_dirs_never_collide(tmp_path):
    first = runs.new_run_dir("nade", tmp_path)
    first.mkdir()
    assert runs.new_run_dir("nade", tmp_path).name == "nade-2"


def test_a_run_stored_before_a_setting_existed_loads_with_the_value_it_trained_with(tmp_path):
    model = genzoo.create("infogan", (1, 28, 28))
    assert model.config.augment_shift == 2  # today's default
    settings = config_to_dict(model.config)
    del settings["augment_shift"]  # a run written before InfoGAN had the setting: it trained without shifts
    runs.write_json(tmp_path / runs.CONFIG, {"model": "infogan", "image_shape": [1, 28, 28], "settings": settings})
    runs.save_weights(model, tmp_path / runs.WEIGHTS)
    assert genzoo.load(tmp_path).config.augment_shift == 0
    assert stored_settings(InfoGANConfig, {"augment_shift": 3})["augment_shift"] == 3  # a stored value wins
