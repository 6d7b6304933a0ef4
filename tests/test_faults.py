"""The error contract under hostile input and faults: every bad option, damaged file, signal, full or read-only disk,
concurrent start and divergence ends in one line (exit 2, or 130 / 143 for a signal) and loses nothing."""

import json
import os
import re
import resource
import shutil
import signal
import string
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import genzoo
from genzoo import engine, runs
from genzoo.data.stream import BatchStream
from genzoo.engine import AtomicCheckpointIO, DivergedError
from genzoo.errors import GenzooError, Interrupted
from genzoo.models.base import DirectStep
from genzoo.models.structured import FVSBN
from test_fuzz_cli import run_cli

TINY = ["independent", "--data", "digits"]


def one_error_line(code, captured, message=""):
    assert code == 2, captured.err
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny run with a checkpoint (2 batches, checkpoint at batch 2), copied by the tests that damage it."""
    out = tmp_path_factory.mktemp("base") / "run"
    genzoo.train("independent", "digits", max_steps=2, out=out, checkpoint_every=2, progress=False, samples=4)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    return copy


# ---------------------------------------------------------------- options, checked before any file exists


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--devices", "0"], "--devices must be a positive whole number or auto, got '0'"),
        (["--devices", "-1"], "--devices must be a positive whole number or auto"),
        (["--devices", "abc"], "--devices must be a positive whole number or auto"),
        (["--devices", "999"], "--devices 999: this machine has"),
        (["--precision", "bogus"], "Precision 'bogus' is invalid"),
        (["--strategy", "bogus"], "unknown --strategy 'bogus'; Lightning's are: auto, ddp"),
        (["--max-epochs", "0"], "--max-epochs must be at least 1, got 0"),
        (["--max-epochs", "-1"], "--max-epochs must be at least 1, got -1"),
        (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
        (["--max-steps", "-5"], "--max-steps must be at least 1, got -5"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
        (["--set", "lr=inf"], "lr must be a positive finite number"),
    ],
)
def test_a_bad_option_is_one_line_and_leaves_nothing(tmp_path, capsys, options, message):
    out = tmp_path / "run"
    code, captured = run_cli(["train", *TINY, "--max-steps", "2", *options, "--out", str(out)], capsys)
    one_error_line(code, captured, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("hidden=-3", "setting hidden must be at least 0, got -3"),
        ("hidden=0", "leave nade a layer of no weights (W has shape (64, 0))"),
        ("hidden=100000000", "nade with these settings needs more than"),  # 313 GB of weights alone
    ],
)
def test_model_sizes_are_checked_before_anything_is_allocated(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    code, captured = run_cli(["train", "nade", "--data", "digits", "--set", setting, "--out", str(out)], capsys)
    one_error_line(code, captured, message)
    assert not out.exists()


def test_create_checks_image_shapes_and_memory():
    for shape in [(3, 0, 5), (1, 28), (1, 28, 28, 1), (1, -28, 28), (1, 28.0, 28), "1x28x28"]:
        with pytest.raises(GenzooError, match="image_shape must be three positive sizes"):
            genzoo.create("nade", shape)
    with pytest.raises(GenzooError, match=r"needs more than .* GB for its parameters; this machine has"):
        genzoo.create("nade", (1, 28, 28), hidden=10**9)
    with pytest.raises(GenzooError, match="setting hidden: expected int, got 2.5"):
        genzoo.create("nade", (1, 28, 28), hidden=2.5)


def test_the_memory_budget_counts_exactly_the_parameter_bytes(monkeypatch):
    model = genzoo.create("nade", (1, 8, 8), hidden=10)
    size = sum(p.nbytes for p in model.state_dict().values())
    monkeypatch.setattr(genzoo.api, "available_memory", lambda: size)
    genzoo.create("nade", (1, 8, 8), hidden=10)  # fits exactly
    monkeypatch.setattr(genzoo.api, "available_memory", lambda: size - 1)
    with pytest.raises(GenzooError, match="needs more than"):
        genzoo.create("nade", (1, 8, 8), hidden=10)


def test_out_naming_a_file_and_sample_out_naming_a_directory_are_refused(tmp_path, capsys, finished_run):
    (tmp_path / "file").write_text("mine")
    code, captured = run_cli(["train", *TINY, "--out", str(tmp_path / "file")], capsys)
    one_error_line(code, captured, "exists and is not a directory")
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "grid.png").mkdir()
    code, captured = run_cli(["sample", str(finished_run), "--out", str(tmp_path / "grid.png")], capsys)
    one_error_line(code, captured, "(a directory)")


def test_load_of_a_file_says_it_wants_the_run_directory(finished_run):
    with pytest.raises(GenzooError, match="model.safetensors is a file, not a run directory"):
        genzoo.load(finished_run / "model.safetensors")


# ---------------------------------------------------------------- the model boundary


BINARY = [("independent", {}), ("markov", {"order": 2}), ("fvsbn", {}), ("nade", {"hidden": 5}),
          ("pixelcnn", {"hidden": 2, "head": 4, "layers": 1})]  # fmt: skip


@pytest.mark.parametrize(("name", "settings"), BINARY)
def test_log_prob_of_a_binary_model_refuses_what_it_cannot_score(name, settings):
    model = genzoo.create(name, (1, 4, 4), **settings)
    good = torch.bernoulli(torch.full((3, 1, 4, 4), 0.5))
    assert model.log_prob(good).shape == (3,)
    assert torch.equal(model.log_prob(good.flatten(1)), model.log_prob(good))  # flattened images are accepted
    assert torch.equal(model.double().log_prob(good), model.log_prob(good.double()))  # 0/1 are exact in any dtype
    model.float()
    cases = {
        "every pixel must be 0 or 1, got 255.0": good * 255,
        "every pixel must be 0 or 1, got 0.5": torch.full((3, 1, 4, 4), 0.5),
        "every pixel must be 0 or 1, got -1.0": torch.full((3, 1, 4, 4), -1.0),
        "every pixel must be 0 or 1, got nan": good.masked_fill(good == 0, float("nan")),
        r"takes images \[B, 1, 4, 4\], got a tensor of shape \[3, 1, 4, 5\]": torch.zeros(3, 1, 4, 5),
        r"got a tensor of shape \[16\]": torch.zeros(16),
        "takes floating-point images of 0s and 1s, got torch.uint8": good.to(torch.uint8),
        "is on cpu, the images on meta": good.to("meta"),
        "takes a tensor of images, got list": [[0.0, 1.0]],
    }
    for message, x in cases.items():
        with pytest.raises(GenzooError, match=message) as caught:
            model.log_prob(x)
        assert "\n" not in str(caught.value)


def test_the_input_check_costs_under_two_percent_of_a_training_step():
    """One tiny timing (median of a few repeats), not a benchmark: NADE at its default size on MNIST batches."""
    model = genzoo.create("nade", (1, 28, 28))
    batch = {"x": torch.bernoulli(torch.full((64, 1, 28, 28), 0.3))}
    step = DirectStep(model)

    def median_seconds(work, repeats):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    training = median_seconds(lambda: model.training_step(batch, step), 5)
    check = median_seconds(lambda: model.check_input(batch["x"]), 50)
    assert check < 0.02 * training, f"check {check * 1e6:.0f} us, training step {training * 1e3:.1f} ms"


# ---------------------------------------------------------------- every file a run reads


def edit_config(run, change):
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


RESUME = ["train", "independent", "--out", "{run}", "--resume"]


@pytest.mark.parametrize(
    ("change", "command", "message"),
    [
        (lambda c: c.pop("data"), RESUME, "config.json has no data, which --resume needs"),
        (lambda c: c.pop("seed"), RESUME, "config.json has no seed, which --resume needs"),
        (lambda c: c.pop("data"), ["eval", "{run}"], "evaluate needs data= (--data)"),
        (lambda c: c.update(image_shape="abc"), ["sample", "{run}"], "image_shape must be three positive integers"),
        (lambda c: c.update(image_shape=[1, -8, 8]), ["sample", "{run}"], "image_shape must be three positive"),
        (lambda c: c.update(image_shape=[1, 8]), ["eval", "{run}"], "image_shape must be three positive integers"),
        (lambda c: c.update(settings=[1]), ["sample", "{run}"], "settings must be an object of model settings"),
        (lambda c: c.update(batch_size="16"), RESUME, 'batch_size must be an integer of at least 1, got "16"'),
        (lambda c: c.update(model=5), ["sample", "{run}"], "model must be a model name, got 5"),
        (lambda c: c.update(model="nosuch"), ["sample", "{run}"], "unknown model 'nosuch'"),
        (lambda c: c.update(levels="x"), ["sample", "{run}"], "levels must be an integer of at least 2"),
        (lambda c: c["settings"].update(lr=[1]), ["sample", "{run}"], "setting lr: expected float, got [1]"),
        (lambda c: c["settings"].update(lr=-1.0), ["eval", "{run}"], "lr must be a positive finite number"),
        (lambda c: c.update(max_steps=0), RESUME, "max_steps must be null or an integer of at least 1"),
        (lambda c: c.update(precision="bogus"), RESUME, "Precision 'bogus' is invalid"),
        (lambda c: c.clear(), ["sample", "{run}"], "has no model, image_shape, settings, which a run needs"),
    ],
)
def test_a_damaged_config_is_one_line(run_copy, tmp_path, capsys, change, command, message):
    edit_config(run_copy, change)
    argv = [arg.replace("{run}", str(run_copy)) for arg in command]
    code, captured = run_cli(argv + ["--out", str(tmp_path / "x.png")] * (command[0] == "sample"), capsys)
    one_error_line(code, captured, message)


def rewrite_weights(path, change):
    save_file({key: change(value) for key, value in load_file(path).items()}, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t * float("nan"), "holds non-finite weights (logits has NaN or infinite values)"),
        (lambda t: t / 0, "holds non-finite weights"),
        (lambda t: t.half(), "logits is stored as torch.float16, the model holds torch.float32"),
        (lambda t: t.long(), "logits is stored as torch.int64"),
        (lambda t: t[:3], "does not match the model in config.json"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_damaged_weights_are_named_on_sample_and_eval(run_copy, tmp_path, capsys, change, message, command):
    rewrite_weights(run_copy / "model.safetensors", change)
    code, captured = run_cli(
        [command, str(run_copy)] + ["--out", str(tmp_path / "x.png")] * (command == "sample"), capsys
    )
    one_error_line(code, captured, message)


def damage_checkpoint(path, change):
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def other_models_checkpoint(path):
    model = genzoo.create("fvsbn", (1, 8, 8))
    damage_checkpoint(path, lambda c: c.update(state_dict={f"model.{k}": v for k, v in model.state_dict().items()}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "cannot load checkpoint .* the file is empty or cut short"),
        (lambda p: p.write_bytes(p.read_bytes()[:300]), "cannot load checkpoint"),
        (lambda p: torch.save({"a": 1}, p), r"is not a genzoo checkpoint \(no genzoo, state_dict"),
        (lambda p: torch.save([1, 2], p), r"is not a genzoo checkpoint \(not a dictionary\)"),
        (other_models_checkpoint, "holds another model's weights, not the run's independent"),
        (lambda p: damage_checkpoint(p, lambda c: c.pop("genzoo")), r"not a genzoo checkpoint \(no genzoo\)"),
        (lambda p: damage_checkpoint(p, lambda c: c.update(genzoo={"batches_done": -2})), "batches_done must be"),
        (lambda p: damage_checkpoint(p, lambda c: c["state_dict"]["model.logits"].fill_(float("nan"))),
         "holds non-finite weights"),
        (lambda p: damage_checkpoint(p, lambda c: c.update(optimizer_states=[])), "optimizer_states does not match"),
        (lambda p: damage_checkpoint(p, lambda c: c.update(loops=3)), "loops is not Lightning's loop state"),
    ],
)  # fmt: skip
def test_a_damaged_checkpoint_is_one_line_on_resume(run_copy, capsys, damage, message):
    damage(run_copy / "checkpoints" / "last.ckpt")
    code, captured = run_cli(["train", "independent", "--out", str(run_copy), "--resume", "--max-steps", "4"], capsys)
    one_error_line(code, captured)
    assert re.search(message, captured.err), captured.err


def test_metrics_json_stays_json_with_non_finite_values(tmp_path, capsys, finished_run, monkeypatch):
    text = runs.json_text({"nll_nats": float("nan"), "kid": float("inf"), "nested": {"x": -float("inf")}, "n": 3})
    assert json.loads(text) == {"nll_nats": None, "kid": None, "nested": {"x": None}, "n": 3,
                                "non_finite": ["kid", "nested.x", "nll_nats"]}  # fmt: skip
    monkeypatch.setattr(genzoo, "evaluate", lambda model, data: {"nll_nats": float("nan")})
    code, captured = run_cli(["eval", str(finished_run)], capsys)
    assert code == 0 and json.loads(captured.out) == {"nll_nats": None, "non_finite": ["nll_nats"]}


def test_run_files_are_readable_like_any_file_the_user_creates(finished_run):
    files = [p for p in finished_run.rglob("*") if p.is_file() and "logs" not in p.parts]
    assert {p.name for p in files} >= {"config.json", "model.safetensors", "metrics.json", "samples.png", "last.ckpt"}
    for path in files:
        assert path.stat().st_mode & 0o777 == runs.FILE_MODE, path
    assert not (finished_run / runs.LOCK).exists()  # released and removed


def test_resume_removes_the_temporaries_of_killed_writes(run_copy):
    planted = [run_copy / "checkpoints" / ".last.ckpt.k2j4h1.tmp", run_copy / "checkpoints" / ".last.ckpt.a8x0qz",
               run_copy / ".model.safetensors.p0c9.tmp"]  # fmt: skip
    for path in planted:
        path.write_bytes(b"torn")
    genzoo.train("independent", out=run_copy, resume=True, max_steps=3, progress=False, samples=4)
    assert not any(path.exists() for path in planted)


# ---------------------------------------------------------------- one process per run directory, complete or nothing


def test_a_locked_run_directory_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    with runs.RunLock(out):
        code, captured = run_cli(["train", *TINY, "--max-steps", "2", "--out", str(out)], capsys)
        one_error_line(code, captured, f"{out} is in use by another genzoo process (pid {os.getpid()})")
        assert not (out / "config.json").exists()
    assert genzoo.train("independent", "digits", max_steps=2, out=out, progress=False, samples=4).metrics


def test_a_failed_start_leaves_nothing_and_a_bare_config_is_accepted_both_ways(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def failing_fit(*args, **kwargs):
        raise GenzooError("the machine fell over")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "fit", failing_fit)
        with pytest.raises(GenzooError, match="fell over"):
            genzoo.train("independent", "digits", max_steps=2, out=out, progress=False)
    assert not out.exists()
    # a start killed before its first checkpoint leaves only config.json: a fresh start and --resume both accept it
    first = genzoo.train("independent", "digits", max_steps=2, out=out, progress=False, samples=4)
    (out / "checkpoints" / "last.ckpt").unlink()
    (out / "model.safetensors").unlink()
    resumed = genzoo.train("independent", out=out, resume=True, progress=False, samples=4)
    assert resumed.metrics["train_batches"] == 2
    assert resumed.metrics["nll_nats"] == first.metrics["nll_nats"]  # batch 0 onward: the same run
    for name in ("checkpoints/last.ckpt", "model.safetensors"):
        (out / name).unlink()
    assert genzoo.train("independent", "digits", max_steps=1, out=out, progress=False, samples=4).metrics


# ---------------------------------------------------------------- divergence and signals, in process


def test_a_poisoned_batch_stops_training_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    """The guard in ModelAdapter.training_step, through the whole of genzoo.train: batch 6 carries a NaN pixel (an
    RNADE takes real values, so nothing before the loss notices it)."""
    clean = BatchStream.batch

    def poisoned(self, index):
        batch = clean(self, index)
        if index == 5:
            batch["x"][0, 0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(BatchStream, "batch", poisoned)
    out = tmp_path / "run"
    with pytest.raises(
        DivergedError, match="diverged at batch 6: nll is not finite; the checkpoint of batch 4 is kept"
    ):
        genzoo.train("rnade", "digits", max_steps=20, checkpoint_every=2, out=out, progress=False,
                     settings={"hidden": 8, "components": 2})  # fmt: skip
    checkpoint = AtomicCheckpointIO().load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert checkpoint["genzoo"]["batches_done"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert not (out / "model.safetensors").exists()


class SignalledAtBatch3(FVSBN):
    """An FVSBN that receives ``SIGNAL`` while training its third batch, as from another terminal."""

    SIGNAL = signal.SIGTERM

    def training_step(self, batch, step):
        if step.batch_index == 2:
            signal.raise_signal(self.SIGNAL)
        return super().training_step(batch, step)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_batch_with_a_checkpoint_weights_and_how_to_resume(tmp_path, monkeypatch, signum):
    monkeypatch.setattr(SignalledAtBatch3, "SIGNAL", signum)
    genzoo.train("fvsbn", "digits", max_steps=6, out=tmp_path / "reference", progress=False, samples=4)
    monkeypatch.setitem(genzoo.registry.models._entries, "fvsbn", SignalledAtBatch3)
    out = tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as caught:
        genzoo.train("fvsbn", "digits", max_steps=6, out=out, progress=False, samples=4)
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's handlers are back
    assert caught.value.exit_code == 128 + signum
    assert str(caught.value) == (
        f"interrupted by {signal.Signals(signum).name} after batch 3; its checkpoint and model.safetensors are saved; "
        f"resume with: genzoo train fvsbn --out {out} --resume"
    )
    assert AtomicCheckpointIO().load_checkpoint(out / "checkpoints" / "last.ckpt")["genzoo"]["batches_done"] == 3
    assert isinstance(genzoo.load(out), FVSBN)  # the weights of batch 3 load
    monkeypatch.undo()
    genzoo.train("fvsbn", out=out, resume=True, progress=False, samples=4)
    expected, actual = load_file(tmp_path / "reference" / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(actual[key], value) for key, value in expected.items())


# ---------------------------------------------------------------- faults of the machine, in subprocesses


def genzoo_process(*args, preexec_fn=None, **popen):
    command = [sys.executable, "-m", "genzoo", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn, **popen)  # fmt: skip


def finished(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def last_line(err):
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def wait_for(path, process, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.02)


LONG = ["nade", "--data", "digits", "--set", "hidden=50", "--max-steps", "100000", "--checkpoint-every", "20"]


@pytest.mark.slow
def test_concurrent_starts_one_trains_the_other_is_refused_with_its_pid(tmp_path):
    out = tmp_path / "run"
    first = genzoo_process("train", *LONG, "--out", out)
    wait_for(out / "checkpoints" / "last.ckpt", first)
    second = genzoo_process("train", *TINY, "--max-steps", "2", "--out", out)
    code, _, err = finished(second)
    assert code == 2
    assert last_line(err) == f"error: {out} is in use by another genzoo process (pid {first.pid}); " + (
        "wait for it to finish or pass another --out"
    )
    first.send_signal(signal.SIGTERM)
    code, _, err = finished(first)
    assert code == 143 and "resume with" in last_line(err)
    assert genzoo.load(out).config.hidden == 50  # one run's config and weights, not a mix


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_signal_ends_with_its_exit_code_and_one_line(tmp_path, signum, code):
    out = tmp_path / "run"
    process = genzoo_process("train", *LONG, "--out", out)
    wait_for(out / "checkpoints" / "last.ckpt", process)
    process.send_signal(signum)
    returncode, _, err = finished(process)
    assert returncode == code
    assert last_line(err).startswith(f"interrupted by {signal.Signals(signum).name} after batch ")
    assert last_line(err).endswith(f"resume with: genzoo train nade --out {out} --resume")
    assert genzoo.load(out) is not None and (out / "checkpoints" / "last.ckpt").is_file()


KILL_AT_SECOND_CHECKPOINT_FSYNC = """
import os, signal, sys
real_fsync, writes = os.fsync, []
def fsync(fd):
    if ".last.ckpt." in os.readlink(f"/proc/self/fd/{fd}"):
        writes.append(fd)
        if len(writes) == 2:  # the second checkpoint's bytes are in its temporary file, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
sys.argv = ["genzoo", *sys.argv[1:]]
from genzoo.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to spot the checkpoint write")
def test_kill_9_during_the_checkpoint_write_keeps_the_previous_one_and_resume_cleans_up(tmp_path):
    command = ["train", *TINY, "--max-steps", "9", "--checkpoint-every", "3", "--seed", "2"]
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "-m", "genzoo", *command, "--out", reference]).returncode == 0
    out = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_CHECKPOINT_FSYNC, *command, "--out", out])
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["genzoo"]["batches_done"] == 3
    assert [p.name for p in (out / "checkpoints").glob(".last.ckpt.*.tmp")], "the torn write left no temporary"
    resumed = subprocess.run([sys.executable, "-m", "genzoo", *command, "--out", out, "--resume"])
    assert resumed.returncode == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    expected, actual = load_file(reference / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(actual[key], value) for key, value in expected.items())


def file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path):
    out = tmp_path / "run"
    small = ["train", "nade", "--data", "digits", "--set", "hidden=20", "--checkpoint-every", "2", "--out", out]
    assert subprocess.run([sys.executable, "-m", "genzoo", *small, "--max-steps", "2"]).returncode == 0
    before = (out / "checkpoints" / "last.ckpt").read_bytes()
    # each checkpoint is ~38 kB: the limit lets config.json through and stops the checkpoint write
    code, _, err = finished(genzoo_process(*small, "--max-steps", "6", "--resume", preexec_fn=file_size_limit(20_000)))
    assert code == 2
    assert (
        last_line(err)
        == f"error: cannot write {out}/checkpoints/last.ckpt: File too large (any earlier version is kept)"
    )
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    fresh = tmp_path / "fresh"
    code, _, err = finished(genzoo_process(*small[:-1], fresh, "--max-steps", "6", preexec_fn=file_size_limit(20_000)))
    assert code == 2 and "File too large" in last_line(err)
    assert not fresh.exists()  # nothing trained was kept, so nothing is left


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory genzoo cannot write to: chmod for a normal user; root ignores modes, so a read-only tmpfs."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_is_one_line(read_only_dir, capsys):
    code, captured = run_cli(["train", *TINY, "--max-steps", "2", "--out", str(read_only_dir / "run")], capsys)
    one_error_line(code, captured, "cannot use")
    assert "Read-only file system" in captured.err or "Permission denied" in captured.err


# ---------------------------------------------------------------- random options and damaged files


def ends_in_success_or_one_error_line(code, captured):
    event(f"exit {code}")
    assert "Traceback" not in captured.err, captured.err
    if code != 0:
        assert code == 2, captured.err
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err


junk = st.text(alphabet=string.ascii_letters + string.digits + "-_.: ", max_size=8)
OPTIONS = {  # valid values, the edge cases the issue found, and junk; never a second device (no DDP in process)
    "--devices": st.sampled_from(["1", "auto", "0", "-1", "999", "abc", "", "1.0"]),
    "--precision": st.sampled_from(["32-true", "bf16-mixed", "64-true", "16-mixed", "transformer-engine", "32"]) | junk,
    "--strategy": st.sampled_from(["auto", "single_device", "deepspeed", "fsdp", "xla"]) | junk,
    "--max-epochs": st.integers(-2, 2).map(str) | junk,
    "--max-steps": st.integers(-2, 3).map(str) | junk,
    "--batch-size": st.sampled_from(["0", "-1", "16", "1437", "1438", "x"]),
    "--seed": st.sampled_from(["0", "-1", str(2**32 - 1), str(2**32), "1e3"]),
    "--checkpoint-every": st.integers(-1, 2).map(str),
    "--set": st.sampled_from(["lr=1e-2", "lr=0", "lr=nan", "lr=-inf", "lr=1e309", "decay_fraction=-1", "x=1", "lr"]),
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chosen=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.none(), max_size=4), data=st.data())
def test_random_train_options_end_in_success_or_one_error_line(tmp_path_factory, capsys, chosen, data):
    out = tmp_path_factory.mktemp("options") / "run"
    argv = ["train", *TINY, "--out", str(out)]
    for option in chosen:
        argv += [option, data.draw(OPTIONS[option], label=option)]
    if "--max-epochs" not in chosen and "--max-steps" not in chosen:
        argv += ["--max-steps", "2"]
    code, captured = run_cli(argv, capsys)
    ends_in_success_or_one_error_line(code, captured)
    assert (out / "metrics.json").is_file() if code == 0 else not out.exists()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


def damage_config(run, data):
    config = json.loads((run / "config.json").read_text())
    target = config["settings"] if data.draw(st.booleans(), label="in settings") else config
    key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=5), label="key")
    if data.draw(st.booleans(), label="delete"):
        target.pop(key, None)
    else:
        target[key] = data.draw(json_values, label="value")
    (run / "config.json").write_text(json.dumps(config))


def damage_bytes(path, data):
    content = bytearray(path.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        del content[data.draw(st.integers(0, len(content)), label="at") :]
    else:
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            content[data.draw(st.integers(0, len(content) - 1), label="byte")] ^= data.draw(st.integers(1, 255))
    path.write_bytes(bytes(content))


DAMAGES = {
    "config.json fields": damage_config,
    "config.json bytes": lambda run, data: damage_bytes(run / "config.json", data),
    "model.safetensors": lambda run, data: damage_bytes(run / "model.safetensors", data),
    "last.ckpt": lambda run, data: damage_bytes(run / "checkpoints" / "last.ckpt", data),
}
COMMANDS = {
    "sample": ["sample", "{run}", "--n", "4", "--out", "{run}/x.png"],
    "eval": ["eval", "{run}"],
    "resume": ["train", "independent", "--out", "{run}", "--resume", "--max-steps", "3"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=st.sampled_from(sorted(DAMAGES)), command=st.sampled_from(sorted(COMMANDS)), data=st.data())
def test_random_damaged_files_end_in_success_or_one_error_line(
    finished_run, tmp_path_factory, capsys, monkeypatch, damage, command, data
):
    # a damaged image_shape may describe a model of any size: let it be refused at 256 MB, not allocated
    monkeypatch.setattr(genzoo.api, "available_memory", lambda: 256 * 2**20)
    run = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished_run, run)
    DAMAGES[damage](run, data)
    code, captured = run_cli([arg.replace("{run}", str(run)) for arg in COMMANDS[command]], capsys)
    ends_in_success_or_one_error_line(code, captured)
