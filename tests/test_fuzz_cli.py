"""Fuzzed command lines: every case ends in success or one `error:` line with exit 2, never a traceback, and a
failed `train` leaves no run directory behind."""

import string
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from genzoo.cli import main

junk = st.text(alphabet=string.ascii_letters + string.digits + "-_=:./ ", max_size=12)
# A valid command line with at most one field replaced by a random (usually invalid) value, so both outcomes occur.
VALID = {"model": "independent", "data": "digits", "setting": "lr=1e-2", "batch": "16", "logger": "csv"}
BROKEN = {
    "model": st.sampled_from(["markov", "nade", "fvsbn", "rnade", "nadee", ""]) | junk,
    "data": st.sampled_from(["digits", "folder:", "folder:/nonexistent", "mnist ", "binarized-mnist "]) | junk,
    "setting": st.sampled_from(["lr=0", "lr=-1", "lr=nan", "order=3", "hidden=x", "lr", "=1", "lr=1e-3"]) | junk,
    "batch": st.sampled_from(["0", "-2", "1", "3000", "1442", "x"]),
    # never wandb or mlflow: a test must not start a tracker that may go online
    "logger": st.sampled_from(["tensorboard", "csv,tensorboard", "", "tb", "csv,"]) | junk,
}


def run_cli(argv, capsys):
    old = sys.argv
    sys.argv = ["genzoo", *argv]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from([None, *BROKEN]), data=st.data())
def test_train_arguments_end_in_success_or_one_error_line(tmp_path_factory, capsys, field, data):
    args = dict(VALID)
    if field is not None:
        args[field] = data.draw(BROKEN[field])
    out = tmp_path_factory.mktemp("fuzz") / "run"
    argv = ["train", args["model"], "--data", args["data"], "--set", args["setting"], "--batch-size", args["batch"]]
    argv += ["--logger", args["logger"], "--max-steps", "1", "--out", str(out)]
    code, captured = run_cli(argv, capsys)
    event(f"exit {code}")
    if code == 0:
        assert (out / "metrics.json").is_file()
    else:
        assert code == 2, captured.err
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert "Traceback" not in captured.err
        assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [["sample", "/nonexistent"], ["sample", ".", "--n", "0"], ["eval", "/"], ["count", "0"], ["train"]],
)
def test_other_commands_reject_bad_input_without_a_traceback(capsys, argv):
    code, captured = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in captured.err
