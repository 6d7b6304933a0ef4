"""Data-parallel training through Lightning (2 CPU processes, gloo) matches one process on the same global batch."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from genzoo.api import create
from genzoo.engine import batch_seed


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


@pytest.mark.slow
def test_a_gan_with_two_optimizers_trains_under_ddp(tmp_path):
    """Both optimizers step through DDP (the generator's update leaves the frozen discriminator without gradients,
    which plain DDP refuses), and the run's own end-of-training check finds the two replicas' weights identical."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "genzoo", "train", "dcgan", "--data", "mnist", "--set", "width=8",
        "--set", "eval_samples=50", "--max-steps", "6", "--seed", "3", "--batch-size", "8",
        "--devices", "2", "--strategy", "ddp", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = load_file(out / "model.safetensors")
    torch.manual_seed(3)  # the run's seed_everything(3) before it builds the model
    initial = create("dcgan", (1, 28, 28), width=8, eval_samples=50).state_dict()
    for network in ("generator", "discriminator"):
        weights = [key for key in trained if key.startswith(network) and key.endswith("weight")]
        assert weights and all(not torch.equal(trained[key], initial[key]) for key in weights), network
        # six Adam steps of lr 2e-4 move each weight by about 1e-3: the rebuilt initialization is the run's own
        assert max(float((trained[key] - initial[key]).abs().max()) for key in weights) < 0.01


def test_each_process_and_batch_gets_its_own_random_stream():
    seeds = {batch_seed(7, batch, rank) for batch in range(100) for rank in range(4)}
    assert len(seeds) == 400  # DDP ranks never draw the same GAN noise; batches never repeat a stream
    assert batch_seed(7, 12, 1) == batch_seed(7, 12, 1) != batch_seed(8, 12, 1)  # a pure function: resume is exact
