"""The command line end to end: train / sample / eval, one-line errors, and exact resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from genzoo.cli import app
from genzoo.errors import GenzooError

runner = CliRunner()


def genzoo(*args):
    """Run the real entry point in a subprocess: what a user sees (stdout, stderr, exit code)."""
    return subprocess.run(
        [sys.executable, "-m", "genzoo", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_list_names_models_and_datasets():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "likelihood:" in result.output and "nade" in result.output and "binarized-mnist" in result.output


def test_count_prints_every_factorization():
    result = runner.invoke(app, ["count", "10", "--order", "1", "--hidden", "3"])
    assert result.exit_code == 0
    assert "full joint: 1,023" in result.output and "markov (k=1): 19" in result.output


def test_train_sample_eval_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = genzoo("train", "nade", "--data", "digits", "--max-steps", "5", "--out", str(out), "--set", "hidden=8")
    assert result.returncode == 0, result.stderr
    for name in ["config.json", "model.safetensors", "metrics.json", "samples.png", "checkpoints/last.ckpt"]:
        assert (out / name).is_file(), name
    assert f"samples: {out / 'samples.png'}" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nll_nats"] > 0 and metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / 64 / 0.6931, 1e-3)
    assert metrics["train_batches"] == 5 and "digits" in metrics["data_source"]
    assert (out / "logs" / "csv" / "version_0" / "metrics.csv").is_file()

    sampled = runner.invoke(app, ["sample", str(out), "--n", "9", "--out", str(tmp_path / "grid.png")])
    assert sampled.exit_code == 0 and (tmp_path / "grid.png").is_file()
    evaluated = runner.invoke(app, ["eval", str(out)])
    assert evaluated.exit_code == 0
    assert json.loads(evaluated.output)["nll_nats"] == pytest.approx(metrics["nll_nats"], rel=1e-6)


def make_run(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "independent", "--data", "digits", "--max-steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "nosuchmodel"], "unknown model 'nosuchmodel'; valid names: "),
        (["train", "nade", "--data", "nosuchdata"], "unknown dataset 'nosuchdata'; valid names: "),
        (["train", "nade", "--set", "hiddden=3"], "unknown setting 'hiddden' for NADEConfig; valid keys: "),
        (["train", "nade", "--set", "hidden=many"], "--set hidden: expected int, got 'many'"),
        (["train", "markov", "--set", "order=99"], "order must be between 1 and 16"),
        (["train", "stargan", "--set", "generator_normalization=foo"], "expected one of instance, batch, got 'foo'"),
        (["train", "nade", "--data", "folder:{tmp}/empty"], "has no images"),
        (["sample", "{tmp}"], "is not a run directory"),
        (["eval", "{tmp}/missing"], "neither a run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "run")]
    result = genzoo(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_corrupt_weights_and_image_shape_mismatch_are_reported(tmp_path):
    out = make_run(tmp_path)
    result = genzoo("eval", str(out), "--data", "mnist")
    assert result.returncode == 2 and "expects images of shape (1, 8, 8), mnist has (1, 28, 28)" in result.stderr
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    result = genzoo("sample", str(out))
    assert result.returncode == 2 and "is not a valid safetensors file" in result.stderr
    assert result.stderr.count("\n") == 1


def test_training_in_process_leaves_the_callers_environment_alone(tmp_path, monkeypatch):
    from genzoo.api import RUN_DIR_ENV

    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    make_run(tmp_path)  # the run directory is exported to DDP workers only while fit runs
    assert RUN_DIR_ENV not in os.environ


def test_an_existing_run_is_never_overwritten(tmp_path):
    out = make_run(tmp_path)
    before = (out / "model.safetensors").read_bytes()
    result = runner.invoke(app, ["train", "independent", "--data", "digits", "--out", str(out)])
    assert result.exit_code != 0 and "already holds a run" in str(result.exception)
    assert (out / "model.safetensors").read_bytes() == before


def test_a_planted_pickle_checkpoint_is_refused(tmp_path):
    from genzoo.engine import AtomicCheckpointIO
    from genzoo.errors import GenzooError

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"state_dict": {}, "evil": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(GenzooError, match="cannot load checkpoint"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


FAMILIES = {  # one model of each family, tiny enough that a few hundred batches take seconds
    "likelihood": ["nade", "--data", "digits", "--set", "hidden=16"],
    "latent": ["vae", "--data", "digits", "--set", "hidden=16", "--set", "latent=4", "--set", "eval_k=5"],
    "adversarial": ["dcgan", "--data", "mnist", "--set", "width=8", "--set", "eval_samples=50"],
    "translation": ["cyclegan", "--data", "mnist-attributes", "--set", "generator_width=4", "--set",
                    "residual_blocks=1", "--set", "discriminator_width=4", "--set", "pool_size=20",
                    "--set", "eval_images=50"],
    "progressive": ["progan", "--data", "mnist", "--set", "max_channels=8", "--set", "latent_dim=16",
                    "--set", "eval_samples=50", "--set", "phase_images=800"],
}  # fmt: skip


def train_command(family, out, steps):
    return [
        sys.executable, "-m", "genzoo", "train", *FAMILIES[family], "--batch-size", "16", "--max-steps", str(steps),
        "--checkpoint-every", "7", "--seed", "5", "--out", str(out),
    ]  # fmt: skip


def train_to_the_end(family, out, steps):
    """An uninterrupted run's final weights."""
    result = subprocess.run(train_command(family, out, steps), capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return load_file(out / "model.safetensors")


def kill_and_resume(family, out, steps):
    """(the batch the run resumed at, its final weights) for a run killed with SIGKILL after its first checkpoint."""
    process = subprocess.Popen(train_command(family, out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # let it run on a little past the first checkpoint, into a later epoch's middle
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "model.safetensors").exists(), "the run finished before it could be killed"
    resumed_from = torch.load(checkpoint, weights_only=True)["genzoo"]["batches_done"]
    resumed = subprocess.run([*train_command(family, out, steps), "--resume"], capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "metrics.json").read_text())["train_batches"] == steps
    return resumed_from, load_file(out / "model.safetensors")


@pytest.mark.parametrize(
    "family",
    # one family by default; every family under -m slow (each is a few hundred batches trained twice)
    [family if family == "likelihood" else pytest.param(family, marks=pytest.mark.slow) for family in FAMILIES],
)
def test_resume_after_kill_9_matches_an_uninterrupted_run(tmp_path, family):
    """Bit-exact on the same machine: every process of one command and seed computes the same numbers (see
    genzoo.mkl_warmup for the one MKL race that broke this), and resume restores weights, optimizers, batch counter
    and data order exactly."""
    steps = 120 if family == "translation" else 300  # a CycleGAN batch runs four networks
    expected = train_to_the_end(family, tmp_path / "reference", steps)
    resumed_from, actual = kill_and_resume(family, tmp_path / "killed", steps)
    differing = [key for key in expected if not torch.equal(actual[key], expected[key])]
    assert not differing, f"resumed at batch {resumed_from}: {len(differing)} tensors differ (first {differing[0]})"


def test_resume_extends_a_finished_run(tmp_path):
    out = tmp_path / "run"
    first = ["train", "fvsbn", "--data", "digits", "--out", str(out), "--checkpoint-every", "2"]
    assert runner.invoke(app, [*first, "--max-steps", "3"]).exit_code == 0
    result = runner.invoke(app, [*first, "--max-steps", "5", "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["train_batches"] == 5
    sessions = sorted(p.parent.name for p in (out / "logs" / "csv").glob("*/metrics.csv"))
    assert sessions == ["version_0", "version_1"]  # the first session's log survives the resume
    # a bare --resume continues toward the run's own budget (the last one given), not the model's default
    assert runner.invoke(app, [*first, "--resume"]).exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["train_batches"] == 5


def test_a_gan_on_a_users_folder_keeps_its_run_when_no_feature_net_exists(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "dcgan", "--data", f"folder:{folder}", "--max-steps", "2", "--batch-size", "4", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert "no feature net" in metrics["evaluation_skipped"] and "evaluation_skipped" in result.output
    assert (out / "samples.png").is_file() and (out / "model.safetensors").is_file()
    # evaluating it on its own is still the one-line error that says how to get a feature net
    result = runner.invoke(app, ["eval", str(out)])
    assert isinstance(result.exception, GenzooError) and "genzoo metrics train-features" in str(result.exception)
