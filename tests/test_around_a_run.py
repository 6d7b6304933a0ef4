"""Around a training run: the curves, config files, experiment trackers and the run's model card."""

import importlib.util
import json
import shlex
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file

import genzoo
from genzoo import config_file, curves, run_card, trackers
from genzoo.errors import GenzooError
from test_faults import one_error_line
from test_fuzz_cli import run_cli

TINY = {"data": "digits", "progress": False, "samples": 4}


# ---------------------------------------------------------------- curves


def write_log(run_dir, version, rows):
    folder = run_dir / "logs" / "csv" / f"version_{version}"
    folder.mkdir(parents=True)
    lines = ["epoch,loss,step", *(f"0,{value},{step}" for step, value in rows)]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_sessions_join_by_batch_and_a_replaying_session_replaces_the_earlier_rows(tmp_path):
    write_log(tmp_path, 0, [(9, 1.0), (19, 2.0), (29, 3.0)])  # logged up to batch 30, last checkpoint at batch 10
    write_log(tmp_path, 1, [(19, 2.5), (29, 3.5), (39, 4.5)])  # resumed from batch 10: batches 20 and 30 again
    write_log(tmp_path, 10, [(49, 6.0)])  # sorted as a number, after version_1
    (tmp_path / "logs" / "csv" / "version_x").mkdir()  # not a session of Lightning's
    names, rows = curves.read_curves(tmp_path)
    assert names == ["loss"]
    assert rows == {10: {"loss": 1.0}, 20: {"loss": 2.5}, 30: {"loss": 3.5}, 40: {"loss": 4.5}, 50: {"loss": 6.0}}
    curves.write_curves(tmp_path)
    lines = (tmp_path / curves.CSV).read_text().splitlines()
    assert lines == ["batch,loss", "10,1.0", "20,2.5", "30,3.5", "40,4.5", "50,6.0"]
    assert Image.open(tmp_path / curves.FIGURE).size == (400, 320)  # one panel


def test_curves_are_refreshed_at_each_checkpoint_with_its_batch_and_at_the_end(tmp_path, monkeypatch):
    seen = []
    refresh = curves.refresh

    def spy(run_dir):
        done = refresh(run_dir)
        seen.append(max(curves.read_curves(run_dir)[1]))
        return done

    monkeypatch.setattr(curves, "refresh", spy)
    monkeypatch.setattr(curves, "REFRESH_INTERVAL_FACTOR", 0)  # batches this fast would skip refreshes
    out = tmp_path / "run"
    genzoo.train("gan", max_steps=25, checkpoint_every=10, out=out, settings={"eval_samples": 100}, **TINY)
    assert seen == [10, 20, 25]  # the refresh after checkpoint t includes batch t's own values
    header, *rows = (out / curves.CSV).read_text().splitlines()
    assert header == "batch,discriminator_loss,generator_loss"
    assert [int(row.split(",")[0]) for row in rows] == [10, 20, 25]
    assert Image.open(out / curves.FIGURE).size == (800, 320)  # one panel per logged value

    seen.clear()
    genzoo.train("gan", max_steps=35, checkpoint_every=10, out=out, resume=True, progress=False, samples=4)
    assert seen == [30, 35]  # no refresh as the resumed session starts
    batches = [int(row.split(",")[0]) for row in (out / curves.CSV).read_text().splitlines()[1:]]
    assert batches == [10, 20, 25, 30, 35]  # both sessions' logs


def test_a_refresh_waits_twenty_times_its_cost_and_the_end_always_refreshes(tmp_path, monkeypatch):
    clock = iter([0.0, 1.0, 5.0, 21.0, 21.5, 22.0, 22.2, 23.0, 23.1, 50.0, 60.0, 60.1])  # as updates start / end
    monkeypatch.setattr(curves.time, "perf_counter", lambda: next(clock))
    outcomes = iter([True, True, True, False, True])
    done = []
    monkeypatch.setattr(curves, "refresh", lambda run_dir: done.append(True) or next(outcomes))
    trainer = type("Trainer", (), {"is_global_zero": True})()
    refresher = curves.CurveRefresh(tmp_path, every=10)
    for final, expected in [
        (False, 1),  # the first refresh: took 1 s
        (False, 1),  # 4 s later: not due before 20 s
        (False, 2),  # 20 s later: due
        (True, 3),  # the end: refreshed however recent the last one was
        (True, 4),  # a failed refresh ...
        (False, 4),  # ... stops the periodic ones
        (True, 5),  # but not the last
    ]:
        refresher.update(trainer, final)
        assert len(done) == expected


def test_a_plotting_error_is_one_warning_line_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("no\nfonts")

    monkeypatch.setattr(curves, "curves_png", broken)
    run = genzoo.train("independent", max_steps=3, out=tmp_path / "run", **TINY)
    assert (run.path / "metrics.json").is_file() and (run.path / curves.CSV).is_file()
    assert not (run.path / curves.FIGURE).exists()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"warning: the curves of {run.path} were not refreshed: no fonts"]


def test_importing_genzoo_leaves_matplotlib_and_yaml_unloaded():
    code = "import sys, genzoo; print(sorted({'matplotlib', 'yaml', 'tensorboard'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


# ---------------------------------------------------------------- trackers


def test_csv_is_the_default_and_tensorboard_logs_when_asked(tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed (pip install 'genzoo[tensorboard]')")
    plain = genzoo.train("independent", max_steps=10, out=tmp_path / "plain", **TINY)
    assert sorted(p.name for p in (plain.path / "logs").iterdir()) == ["csv"]
    tracked = genzoo.train("independent", max_steps=10, out=tmp_path / "tb", trackers=["tensorboard"], **TINY)
    (events,) = (tracked.path / "logs" / "tensorboard" / "version_0").glob("events.out.tfevents.*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    (scalar,) = accumulator.Scalars("nll")
    logged = (tracked.path / curves.CSV).read_text().splitlines()[1]
    assert (scalar.step + 1, scalar.value) == pytest.approx(tuple(float(v) for v in logged.split(",")))


@pytest.mark.parametrize(
    ("logger", "message"),
    [
        ("wandb", "--logger wandb needs the wandb package: pip install 'genzoo[wandb]'"),
        ("mlflow", "--logger mlflow needs the mlflow package: pip install 'genzoo[mlflow]'"),
        ("csv,comet", "unknown --logger 'comet'; choose from csv, tensorboard, wandb, mlflow"),
    ],
)
def test_a_tracker_that_is_missing_or_unknown_is_one_line(tmp_path, capsys, monkeypatch, logger, message):
    # as if not installed, whatever this machine has: a test never starts a tracker that could go online
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        trackers.importlib.util, "find_spec", lambda n: None if n in ("wandb", "mlflow") else find_spec(n)
    )
    out = tmp_path / "run"
    code, captured = run_cli(
        ["train", "independent", "--data", "digits", "--logger", logger, "--out", str(out)], capsys
    )
    one_error_line(code, captured, message)
    assert not out.exists()


# ---------------------------------------------------------------- config files


def print_config(capsys, *args):
    code, captured = run_cli(["train", *args, "--print-config"], capsys)
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_the_printed_default_config_is_the_default_run(tmp_path, capsys):
    printed = print_config(capsys, "independent")
    assert printed["model"] == "independent" and printed["data"] == "mnist" and printed["max_epochs"] == 10
    assert printed["settings"] == {"lr": 0.01, "decay_fraction": 0.0}
    path = tmp_path / "independent.json"
    path.write_text(json.dumps(printed))
    assert print_config(capsys, "independent", "--config", str(path)) == printed  # a fixed point

    budget = ["--data", "digits", "--max-steps", "3"]
    for name, config in [("plain", []), ("from-file", ["--config", str(path)])]:
        code, captured = run_cli(["train", "independent", *config, *budget, "--out", str(tmp_path / name)], capsys)
        assert code == 0, captured.err
    assert (tmp_path / "plain" / "config.json").read_text() == (tmp_path / "from-file" / "config.json").read_text()
    plain, from_file = (load_file(tmp_path / name / "model.safetensors") for name in ("plain", "from-file"))
    assert all(torch.equal(plain[key], from_file[key]) for key in plain)


def test_the_command_line_wins_over_the_file(tmp_path, capsys):
    path = tmp_path / "nade.yaml"
    path.write_text(
        "batch_size: 32\nseed: 7\nmax_steps: 500\nlogger: tensorboard\nsettings:\n  hidden: 20\n  lr: 3e-4\n"
    )
    if importlib.util.find_spec("yaml") is None:
        pytest.skip("PyYAML is not installed (pip install 'genzoo[yaml]')")
    merged = print_config(capsys, "nade", "--config", str(path), "--seed", "1", "--set", "lr=1e-3")
    assert (merged["batch_size"], merged["seed"], merged["max_steps"], merged["max_epochs"]) == (32, 1, 500, None)
    assert merged["logger"] == ["csv", "tensorboard"]
    assert (merged["settings"]["hidden"], merged["settings"]["lr"]) == (20, 1e-3)  # 3e-4 is YAML text: parsed
    # a budget on the command line replaces the file's whole budget, not one of its two keys
    merged = print_config(capsys, "nade", "--config", str(path), "--max-epochs", "2")
    assert (merged["max_steps"], merged["max_epochs"]) == (None, 2)


def test_yaml_without_pyyaml_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    path = tmp_path / "run.yaml"
    path.write_text("seed: 3\n")
    code, captured = run_cli(["train", "nade", "--config", str(path), "--print-config"], capsys)
    one_error_line(code, captured, "is not JSON, and reading YAML needs PyYAML: pip install 'genzoo[yaml]'")
    path.write_text('{"seed": 3}')  # JSON needs no PyYAML, whatever the file is called
    assert print_config(capsys, "nade", "--config", str(path))["seed"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must hold a mapping of options, got list"),
        ('{"hidden": 20}', "'hidden' is a setting of nade; put it under settings:"),
        ('{"epochs": 2}', "unknown key 'epochs'; valid keys: model, data, max_epochs"),
        ('{"batch_size": "64"}', "batch_size must be a whole number, got '64'"),
        ('{"max_steps": true}', "max_steps must be a whole number or null, got True"),
        ('{"logger": [1]}', "logger must be a tracker name or a list of them, got [1]"),
        ('{"model": "vae"}', "is for model 'vae', not nade"),
        ('{"settings": [1]}', "settings must be a mapping of --set keys to values"),
        ('{"settings": {"hidden": "x"}}', "--set hidden: expected int, got 'x'"),
        ('{"settings": {"width": 3}}', "unknown setting 'width' for NADEConfig"),
        ('{"settings": {"lr": NaN}}', "lr must be a positive finite number"),
        ('{"seed": -1}', "--seed must be between 0 and 2**32 - 1"),
        ('{"logger": "tb"}', "unknown --logger 'tb'"),
        ('{"seed": 1', "is not valid JSON: Expecting"),
    ],
)
def test_a_bad_config_file_is_one_line_and_leaves_nothing(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    out = tmp_path / "run"
    code, captured = run_cli(["train", "nade", "--data", "digits", "--config", str(path), "--out", str(out)], capsys)
    one_error_line(code, captured, message)
    assert not out.exists()


def test_config_files_that_cannot_be_read_or_meet_resume_are_one_line(tmp_path, capsys):
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    for config, message in [
        (tmp_path / "missing.json", "No such file or directory"),
        (tmp_path, "Is a directory"),
        (tmp_path / "binary.yaml", "is not a text file"),
    ]:
        code, captured = run_cli(["train", "nade", "--config", str(config), "--print-config"], capsys)
        one_error_line(code, captured, message)
    code, captured = run_cli(["train", "nade", "--config", "x.json", "--out", str(tmp_path), "--resume"], capsys)
    one_error_line(code, captured, "--resume continues the run's own config; --config is for new runs")


keys = st.sampled_from(["data", "max_steps", "batch_size", "seed", "logger", "precision", "settings", "model", "x"])
values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["hidden", "lr", "y"]), inner),
    max_leaves=6,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.dictionaries(keys, values, max_size=4) | values)
def test_fuzzed_config_files_end_in_a_config_or_one_error_line(tmp_path_factory, capsys, content):
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(content))
    code, captured = run_cli(["train", "nade", "--config", str(path), "--print-config"], capsys)
    if code == 0:
        assert json.loads(captured.out)["model"] == "nade"
    else:
        assert code == 2 and captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err


def test_train_arguments_drop_the_files_budget_only_for_a_budget_on_the_command_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"max_steps": 9, "max_epochs": 2, "seed": 4}')
    assert config_file.train_arguments("nade", {"seed": 5}, {}, path) == {
        "max_steps": 9, "max_epochs": 2, "seed": 5, "settings": {}
    }  # fmt: skip
    assert config_file.train_arguments("nade", {"max_steps": 1}, {"lr": "1"}, path) == {
        "max_steps": 1, "seed": 4, "settings": {"lr": "1"}
    }  # fmt: skip
    with pytest.raises(GenzooError, match="unknown model"):
        config_file.train_arguments("nadee", {}, {}, path)


# ---------------------------------------------------------------- the run's model card


def test_the_run_card_describes_the_run_and_its_command_remakes_it(tmp_path, capsys):
    out = tmp_path / "first"
    run = genzoo.train("independent", max_steps=3, out=out, settings={"lr": 0.02}, **TINY)
    card = (out / "README.md").read_text()
    assert card.startswith("# first: independent\n\nEvery pixel an independent Bernoulli")
    assert f"- **Paper**: {run_card.PAPERS['independent']}" in card
    assert f"`digits`, images 1x8x8, 256 levels; {run.metrics['data_source']}" in card
    assert "3 batches of 64 images (budget: max steps 3), seed 0" in card
    assert f"- **Headline**: nll_nats = {run.metrics['nll_nats']:.4g}" in card
    assert "| lr | 0.02 |" in card and "![curves](curves.png)" in card and "![samples](samples.png)" in card
    (command,) = [line.strip() for line in card.splitlines() if line.startswith("    genzoo train")]
    words = shlex.split(command)
    assert words[-2:] == ["--out", str(out)] and "--set" in words and "lr=0.02" in words
    code, captured = run_cli([*words[1:-1], str(tmp_path / "again")], capsys)
    assert code == 0, captured.err
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again == json.loads((out / "config.json").read_text())
    first, second = (load_file(d / "model.safetensors") for d in (out, tmp_path / "again"))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_model_without_a_listed_paper_cites_its_module_docstring(monkeypatch):
    monkeypatch.delitem(run_card.PAPERS, "nade")
    assert run_card.paper_of("nade") == (
        "NADE (Larochelle & Murray, AISTATS 2011) and RNADE (Uria, Murray & Larochelle, NeurIPS 2013)."
    )


def test_settings_in_the_card_command_read_back_as_the_same_values():
    from genzoo.config import build_config, config_to_dict
    from genzoo.registry import models

    config = {"model": "gan", "settings": {"generator_lr": None, "generator_batch_norm": False, "lr": 1e-4}}
    changed = run_card.changed_settings(config)
    assert changed == {"generator_batch_norm": False, "lr": 1e-4}  # generator_lr is None by default
    assignments = {key: run_card._text(value) for key, value in changed.items()}
    assert config_to_dict(build_config(models.get("gan").Config, assignments)) == {
        **config_to_dict(build_config(models.get("gan").Config, {})), **changed
    }  # fmt: skip


def test_a_resumed_session_rewrites_the_card(tmp_path):
    out = tmp_path / "run"
    genzoo.train("independent", max_steps=1, out=out, **TINY)
    assert "1 batches of 64 images (budget: max steps 1)" in (out / "README.md").read_text()
    genzoo.train("independent", max_steps=2, out=out, resume=True, progress=False, samples=4)
    assert "2 batches of 64 images (budget: max steps 2)" in (out / "README.md").read_text()


def test_eval_every_draws_the_test_curve_and_leaves_the_training_unchanged(tmp_path):
    plain = genzoo.train("nade", max_steps=6, out=tmp_path / "plain", settings={"hidden": 8}, **TINY)
    curve = genzoo.train(
        "nade", max_steps=6, eval_every=3, out=tmp_path / "curve", settings={"hidden": 8}, checkpoint_every=4, **TINY
    )
    header, *rows = (tmp_path / "curve" / curves.CSV).read_text().splitlines()
    names = header.split(",")
    tested = {int(row.split(",")[0]): row.split(",")[names.index("test_nll_nats")] for row in rows}
    assert [batch for batch, value in tested.items() if value] == [3, 6]
    assert float(tested[6]) == pytest.approx(curve.metrics["nll_nats"], rel=1e-6)  # the final evaluation's number
    assert float(tested[3]) > float(tested[6])  # a model learning on digits
    first, second = (load_file(d / "model.safetensors") for d in (tmp_path / "plain", tmp_path / "curve"))
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert plain.metrics["nll_nats"] == curve.metrics["nll_nats"]
