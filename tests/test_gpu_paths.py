"""What a GPU user runs, forced on the CPU: batches built on the training device, fp16 autocast with a gradient
scaler (``--precision 16-mixed``), bf16 autocast, and the benchmark script's smoke run."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

import genzoo
from genzoo.data.stream import BatchStream
from genzoo.engine import AtomicCheckpointIO, StopAfterBatches, fit, make_trainer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def made_stream(kind: str = "dequantized", batch_size: int = 8) -> BatchStream:
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return BatchStream(images, torch.arange(64) % 10, batch_size, kind, 256, seed=1)


def test_the_dataset_moves_to_the_training_device_before_the_first_batch(tmp_path, monkeypatch):
    reference = [made_stream().batch(i)["x"] for i in range(3)]
    events = []
    original_to, original_batch = BatchStream.to, BatchStream.batch

    def to(self, device):
        events.append(("to", str(device)))
        return original_to(self, device)

    def batch(self, index):
        out = original_batch(self, index)
        events.append(("batch", str(out["x"].device), str(out["y"].device)))
        return out

    monkeypatch.setattr(BatchStream, "to", to)
    monkeypatch.setattr(BatchStream, "batch", batch)
    stream = made_stream()
    stream.device = torch.device("meta")  # as if the data sat elsewhere than the device Lightning trains on
    model = genzoo.create("rnade", (1, 28, 28), hidden=8)  # a model of the stream's dequantized batches
    trainer = make_trainer(
        tmp_path, max_epochs=1, max_batches=3, checkpoint_every=100, devices=1, strategy="auto",
        precision="32-true", progress=False,
    )  # fmt: skip
    fit(model, stream, trainer, 3, None)
    assert events[0] == ("to", "cpu")  # before Lightning prefetches the first batch
    assert all(event == ("batch", "cpu", "cpu") for event in events[1:]) and len(events) >= 4
    # on the CPU the device generator is the CPU one: the same batches as a stream that never moved
    assert all(torch.equal(stream.batch(i)["x"], reference[i]) for i in range(3))


@pytest.mark.parametrize("kind", ["binary", "dequantized", "signed", "levels", "unit"])
def test_a_moved_stream_builds_every_kind_of_batch_on_its_device(kind):
    moved = made_stream(kind).to("cpu")
    batch = moved.batch(5)
    assert batch["x"].device == moved.images.device == torch.device("cpu")
    assert torch.equal(batch["x"], made_stream(kind).batch(5)["x"])


def test_fp16_autocast_with_a_gradient_scaler_trains_a_gan_through_the_engine(tmp_path):
    """`--precision 16-mixed` on a GPU: fp16 autocast and a GradScaler around every manual optimizer step. Lightning
    turns 16-mixed into bf16 on the CPU, so the plugin is built by hand here with a CPU scaler."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        plugins=[AtomicCheckpointIO(), MixedPrecision("16-mixed", "cpu", scaler)], callbacks=[StopAfterBatches(3)],
    )  # fmt: skip
    model = genzoo.create("dcgan", (1, 28, 28), width=8, channels_last=False)
    dtypes = []
    model.discriminator.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = fit(model, made_stream("signed"), trainer, 3, None)
    assert adapter.batches_done == 3 and torch.float16 in dtypes
    # every scaled step that found finite gradients raised the scale (growth_interval 1): the scaler drove the steps
    assert scaler.get_scale() > 2.0**10
    for key in ("generator.1.weight", "discriminator.0.weight"):
        weight = model.state_dict()[key]
        assert weight.dtype == torch.float32 and torch.isfinite(weight).all() and not torch.equal(weight, before[key])


def test_bf16_mixed_training_is_recorded_in_the_run(tmp_path):
    run = genzoo.train(
        "dcgan", "mnist", max_steps=2, batch_size=8, out=tmp_path / "run", precision="bf16-mixed",
        settings={"width": 8}, samples=4, progress=False,
    )  # fmt: skip
    assert run.metrics["train_precision"] == "bf16-mixed"
    assert genzoo.load(run.path).run_config["precision"] == "bf16-mixed"


@pytest.mark.slow
def test_throughput_benchmark_smoke_run_prints_images_per_second():
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), "--models", "dcgan,vae", "--batches", "2", "--warmup", "0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("device: cpu")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"dcgan", "vae"} and all(float(row[-1]) > 0 for row in rows.values())
