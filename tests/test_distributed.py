"""Data-parallel training through Lightning (2 CPU processes, gloo) matches one process on the same global batch."""

import subprocess
import sys

import torch
from safetensors.torch import load_file


def train(out, *extra):
    command = [
        sys.executable, "-m", "genzoo", "train", "fvsbn", "--data", "digits",
        "--max-steps", "12", "--seed", "3", "--out", str(out), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return load_file(out / "model.safetensors")


def test_two_process_ddp_matches_one_process_on_the_same_global_batch(tmp_path):
    single = train(tmp_path / "single", "--batch-size", "16")
    ddp = train(tmp_path / "ddp", "--batch-size", "8", "--devices", "2", "--strategy", "ddp")
    assert single.keys() == ddp.keys()
    moved = single["bias"].abs().sum()
    assert moved > 0
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5)
