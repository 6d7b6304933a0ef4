"""The engine: divergence stops training with one line and keeps the last finite checkpoint."""

import pytest
import torch

import genzoo
from genzoo.data.stream import BatchStream
from genzoo.engine import AtomicCheckpointIO, DivergedError, fit, make_trainer
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


def test_model_preferred_precision_is_used_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.setattr(FVSBN, "precision", "bf16-mixed")
    run = genzoo.train("fvsbn", "digits", max_steps=1, out=tmp_path / "a", progress=False, samples=1)
    assert genzoo.load(run.path).run_config["precision"] == "bf16-mixed"
    run = genzoo.train("fvsbn", "digits", max_steps=1, out=tmp_path / "b", progress=False, samples=1,
                       precision="32-true")  # fmt: skip
    assert genzoo.load(run.path).run_config["precision"] == "32-true"
