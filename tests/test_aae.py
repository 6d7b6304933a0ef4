"""Adversarial autoencoder: the mixture prior's geometry, which networks each of the three optimizers moves, the
label-conditioned discriminator, a short training that pulls the codes to the prior, and the CLI end to end."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.data import load_dataset
from genzoo.data.transforms import prepare, prepare_test
from genzoo.errors import GenzooError
from genzoo.models.latent.aae import MIXTURE_RADIUS, mixture_codes

runner = CliRunner()


class SnapshotStep:
    """Runs each named optimizer like the engine and records which submodules its step changed."""

    batch_index, max_batches = 0, None

    def __init__(self, model):
        self.model, self.optimizers, self.changed = model, model.configure_optimizers(), {}

    def optimize(self, loss, optimizer="model"):
        before = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        self.optimizers[optimizer].zero_grad()
        loss.backward()
        self.optimizers[optimizer].step()
        moved = {name.split(".")[0] for name, p in self.model.named_parameters() if not torch.equal(p, before[name])}
        self.changed[optimizer] = moved


def test_mixture_components_sit_on_a_circle_in_every_pair_of_dimensions():
    labels = torch.arange(10).repeat_interleave(2000)
    codes = mixture_codes(labels, 10, 4).view(10, 2000, 2, 2)  # [component, draw, pair, (x, y)]
    angles = 2 * math.pi * torch.arange(10) / 10
    centres = MIXTURE_RADIUS * torch.stack([angles.cos(), angles.sin()], -1)  # [10, 2]
    assert torch.allclose(codes.mean(1), centres[:, None].expand(10, 2, 2), atol=0.05)
    radial = (codes * centres[:, None, None] / MIXTURE_RADIUS).sum(-1)  # projection on the centre's direction
    tangential = (codes - radial[..., None] * centres[:, None, None] / MIXTURE_RADIUS).norm(dim=-1)
    assert float(radial.std()) > 3 * float(tangential.pow(2).mean().sqrt())  # elongated along the radius


def digits_train(count):
    dataset = load_dataset("digits")
    return prepare_test(dataset.train[:count], "binary", dataset.levels)


def test_each_optimizer_moves_only_its_networks():
    model = genzoo.create("aae", (1, 8, 8), hidden=16, latent=2, discriminator_hidden=16, encoder="gaussian")
    step = SnapshotStep(model)
    logs = model.training_step({"x": digits_train(32)}, step)
    assert {"reconstruction", "discriminator", "generator"} == logs.keys()
    assert step.changed == {
        "autoencoder": {"encoder", "decoder"},
        "discriminator": {"discriminator"},
        "generator": {"encoder"},
    }


def test_supervised_discriminator_sees_the_label_and_needs_labels():
    model = genzoo.create("aae", (1, 8, 8), hidden=16, latent=2, prior="mixture", supervised=True)
    z = torch.randn(5, 2)
    assert not torch.allclose(
        model._discriminate(z, torch.zeros(5, dtype=torch.long)),
        model._discriminate(z, torch.ones(5, dtype=torch.long)),
    )
    x = digits_train(8)
    with pytest.raises(GenzooError, match="needs a dataset with labels"):
        model.training_step({"x": x}, SnapshotStep(model))
    with pytest.raises(GenzooError, match="label needs prior=mixture"):
        genzoo.create("aae", (1, 8, 8), hidden=16).sample(2, label=1)


def test_invalid_settings_are_refused():
    with pytest.raises(GenzooError, match="needs prior=mixture"):
        genzoo.create("aae", supervised="true")
    with pytest.raises(GenzooError, match="even latent size"):
        genzoo.create("aae", prior="mixture", latent=3)


@pytest.mark.slow
def test_training_matches_the_codes_to_the_gaussian_prior():
    torch.manual_seed(0)
    model = genzoo.create("aae", (1, 8, 8), hidden=64, latent=2, discriminator_hidden=64)
    dataset = load_dataset("digits")
    step, generator = SnapshotStep(model), torch.Generator().manual_seed(0)
    for _ in range(1500):
        chosen = torch.randint(len(dataset.train), (64,), generator=generator)
        model.training_step({"x": prepare(dataset.train[chosen], "binary", dataset.levels, generator)}, step)
    codes = model.encode(prepare_test(dataset.test, "binary", dataset.levels))
    assert codes.mean(0).abs().max() < 0.3 and torch.allclose(codes.std(0), torch.ones(2), atol=0.3)


def test_cli_train_sample_interpolate_end_to_end(tmp_path):
    out = tmp_path / "aae"
    settings = [
        "latent=2",
        "hidden=16",
        "discriminator_hidden=16",
        "prior=mixture",
        "supervised=true",
        "parzen_samples=200",
    ]
    args = ["train", "aae", "--data", "digits", "--max-steps", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, *[part for s in settings for part in ("--set", s)]])
    assert result.exit_code == 0, result.output
    for name in ["samples.png", "metrics.json", "reconstructions.png", "model.safetensors"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parzen_samples"] == 200 and metrics["reconstruction_nats"] > 0
    assert metrics["parzen_validation_images"] + metrics["parzen_test_images"] == metrics["test_images"]

    sampled = runner.invoke(app, ["sample", str(out), "--n", "4", "--label", "3", "--out", str(tmp_path / "s.png")])
    assert sampled.exit_code == 0, sampled.output
    explored = runner.invoke(app, ["interpolate", str(out), "--out", str(tmp_path / "latent"), "--pairs", "2"])
    assert explored.exit_code == 0, explored.output
    assert (tmp_path / "latent" / "manifold.png").is_file()
