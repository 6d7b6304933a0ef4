"""The engine: divergence stops training with one line and keeps the last finite checkpoint; logs and timing."""

import csv
import math
import time

import pytest
import torch

import genzoo
from genzoo import engine
from genzoo.data.stream import BatchStream
from genzoo.engine import AtomicCheckpointIO, BatchClock, DivergedError, fit, make_trainer
from genzoo.models.base import adam
from genzoo.models.structured import FVSBN


class DivergesAtBatch4(FVSBN):
    def training_step(self, batch, step):
        logs = super().training_step(batch, step)
        if step.batch_index >= 3:
            with torch.no_grad():
                self.bias.fill_(float("nan"))
            return {"nll": torch.tensor(float("nan"))}
        return logs


def test_divergence_stops_with_one_line_and_keeps_the_last_finite_checkpoint(tmp_path):
    model = DivergesAtBatch4(FVSBN.Config(), (1, 8, 8))
    images = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
    stream = BatchStream(images, None, 8, "binary", 256, seed=0)
    trainer = make_trainer(
        tmp_path, max_epochs=5, max_batches=None, checkpoint_every=1, devices=1, strategy="auto",
        precision="32-true", progress=False,
    )  # fmt: skip
    with pytest.raises(DivergedError, match="training diverged at batch 4: nll is not finite") as caught:
        fit(model, stream, trainer, None, None)
    assert "\n" not in str(caught.value)
    checkpoint = AtomicCheckpointIO().load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["genzoo"]["batches_done"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


@pytest.mark.parametrize("native", [True, False])
def test_preferred_bf16_is_used_only_where_native_and_an_explicit_precision_always(tmp_path, monkeypatch, native):
    monkeypatch.setattr(FVSBN, "precision", "bf16-mixed")
    monkeypatch.setattr(engine, "native_bf16", lambda: native)
    expected = "bf16-mixed" if native else "32-true"
    run = genzoo.train("fvsbn", "digits", max_steps=1, out=tmp_path / "a", progress=False, samples=1)
    assert genzoo.load(run.path).run_config["precision"] == expected
    # a resumed run keeps the precision it started with, whatever this machine would choose now
    monkeypatch.setattr(engine, "native_bf16", lambda: not native)
    run = genzoo.train("fvsbn", max_steps=2, out=tmp_path / "a", resume=True, progress=False, samples=1)
    assert run.metrics["train_precision"] == expected
    explicit = "bf16-mixed" if not native else "32-true"  # the opposite of what this machine would choose
    run = genzoo.train("fvsbn", "digits", max_steps=1, out=tmp_path / "b", progress=False, samples=1,
                       precision=explicit)  # fmt: skip
    assert genzoo.load(run.path).run_config["precision"] == explicit


def test_logs_keep_every_written_step_and_the_rate_leaves_out_setup(tmp_path):
    run = genzoo.train("fvsbn", "digits", max_steps=25, out=tmp_path / "r", progress=False, samples=1)
    rows = list(csv.DictReader((run.path / "logs" / "csv" / "version_0" / "metrics.csv").open()))
    # the steps Lightning writes (every log_every_n_steps = 10, and the last batch), each with the model's loss
    assert [int(r["step"]) for r in rows] == [9, 19, 24]
    assert all(math.isfinite(float(r["nll"])) for r in rows)
    # the steady rate times batches 2..25 only, so it cannot claim more time than the whole session took
    m = run.metrics
    assert 24 * 64 / m["train_images_per_second"] < m["train_seconds"]


def test_batch_clock_times_the_batches_after_the_first():
    clock = BatchClock()
    assert clock.seconds_per_batch() is None
    clock.on_train_batch_end()
    assert clock.seconds_per_batch() is None  # the warm-up batch alone gives no steady rate
    time.sleep(0.05)
    clock.on_train_batch_end()
    time.sleep(0.01)
    clock.on_train_batch_end()
    assert 0.025 < clock.seconds_per_batch() < 0.2  # (0.05 + 0.01) / 2, with scheduling slack upwards


@pytest.mark.parametrize("grouped", [False, True])
def test_adam_updates_every_parameter_it_is_given_once_as_tensors_or_groups(grouped):
    layer = torch.nn.Linear(3, 2)
    parameters = [{"params": layer.parameters()}] if grouped else layer.parameters()  # generators, read once
    optimizer = adam(parameters, 0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    layer(torch.randn(4, 3)).square().sum().backward()
    optimizer.step()
    assert len(optimizer.param_groups) == 1 and len(optimizer.param_groups[0]["params"]) == 2
    assert all(not torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    assert optimizer.defaults["fused"]  # CPU has the fused kernel


def test_fused_adam_resumes_a_channels_last_parameter_from_a_contiguous_state_exactly():
    # a checkpoint may hand the moments back contiguous; the fused kernel must still pair the right elements
    torch.manual_seed(0)
    start = torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    grads = [torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last) for _ in range(2)]

    def two_steps(make, reload):
        weight = torch.nn.Parameter(start.clone(memory_format=torch.channels_last))
        optimizer = make([weight])
        weight.grad = grads[0].clone(memory_format=torch.channels_last)
        optimizer.step()
        if reload:
            saved = optimizer.state_dict()
            for state in saved["state"].values():
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = state[key].contiguous()
            optimizer = make([weight])
            optimizer.load_state_dict(saved)
        weight.grad = grads[1].clone(memory_format=torch.channels_last)
        optimizer.step()
        return weight.detach()

    reference = two_steps(lambda params: torch.optim.Adam(params, lr=0.1, foreach=False), reload=False)
    resumed = two_steps(lambda params: adam(params, 0.1), reload=True)
    torch.testing.assert_close(resumed, reference, rtol=1e-6, atol=1e-7)


def test_the_engine_decays_every_scheduled_rate_over_the_last_fraction_of_the_planned_batches(tmp_path):
    # decay_fraction 0.5 of 8 batches: constant for batches 0-3, then (8 - t) / 4 for t = 4..7; the last batch
    # (t = 7) trains at a quarter of the rate, and that is the rate the final checkpoint holds
    genzoo.train("fvsbn", "digits", max_steps=8, out=tmp_path / "run", settings={"decay_fraction": 0.5}, progress=False)
    state = AtomicCheckpointIO().load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    group = state["optimizer_states"][0]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(1e-2) and group["lr"] == pytest.approx(1e-2 / 4)
