"""The template model stays a complete, correct model: exact density, matching sampler, training through the
engine (with the learning-rate schedule) and evaluation."""

import itertools

import pytest
import torch

from genzoo.data.stream import BatchStream
from genzoo.engine import fit, make_trainer
from genzoo.models.template import MixtureOfBernoullis, TemplateConfig
from genzoo.registry import models


def every_binary_image(shape):
    pixels = torch.tensor(list(itertools.product([0.0, 1.0], repeat=shape[0] * shape[1] * shape[2])))
    return pixels.view(-1, *shape)


def test_the_template_is_not_registered():
    assert "template" not in models.names() and MixtureOfBernoullis not in models._entries.values()


def test_density_sums_to_one_and_the_sampler_draws_from_it():
    torch.manual_seed(0)
    model = MixtureOfBernoullis(TemplateConfig(components=3), (1, 2, 2))
    with torch.no_grad():
        model.pixel_logits.mul_(20)  # far from uniform, so a wrong mixture would show
        model.mixture_logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
    images = every_binary_image((1, 2, 2))  # [16, 1, 2, 2]
    probabilities = model.log_prob(images).exp()
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
    draws = model.sample(20000).flatten(1)
    codes = (draws * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    frequencies = torch.bincount(codes, minlength=16).float() / len(codes)
    order = (images.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    assert torch.allclose(frequencies[order], probabilities.detach(), atol=0.015)


def test_training_through_the_engine_follows_the_schedule_and_lowers_the_nll(tmp_path):
    torch.manual_seed(0)
    model = MixtureOfBernoullis(TemplateConfig(lr=0.05, decay_fraction=1.0), (1, 4, 4))
    images = ((torch.rand(256, 1, 4, 4) < torch.linspace(0.1, 0.9, 16).view(1, 1, 4, 4)) * 255).to(torch.uint8)
    before = -model.log_prob(images.float() / 255).mean()
    trainer = make_trainer(
        tmp_path, max_epochs=None, max_batches=8, checkpoint_every=100, devices=1, strategy="auto",
        precision="32-true", progress=False,
    )  # fmt: skip
    fit(model, BatchStream(images, None, 32, "binary", 256, seed=0), trainer, 8, None)
    (optimizer,) = trainer.optimizers
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (1 - 7 / 8))  # the last batch's rate
    assert -model.log_prob(images.float() / 255).mean() < before
    metrics = model.evaluate(images.float() / 255, None, 256)
    assert metrics["nll_nats"] == pytest.approx(float(-model.log_prob(images.float() / 255).mean()), rel=1e-5)
