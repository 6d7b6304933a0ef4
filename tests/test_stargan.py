"""StarGAN: the gradient penalty on a known function, per-group classification, conditioning, a real
optimisation step with the 5:1 critic schedule, and the CLI end to end with ``genzoo translate --to thick,red``."""

import json

import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import genzoo
from genzoo import runs
from genzoo.cli import app
from genzoo.config import config_to_dict
from genzoo.data import load_dataset
from genzoo.data.domains import render
from genzoo.losses import gradient_penalty
from genzoo.models.base import DirectStep
from genzoo.models.translation.stargan import (
    GROUP_SIZES,
    classification_loss,
    predicted_values,
)
from genzoo.nn.translation import (
    FiLMNormalization,
    PatchDiscriminator,
    one_hot_groups,
    replicate,
    straight_through_clamp,
)
from genzoo.registry import models

TINY = {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4}
runner = CliRunner()


def attribute_batch(n=8):
    generator = torch.Generator().manual_seed(0)
    labels = torch.stack([torch.randint(s, (n,), generator=generator) for s in (10, *GROUP_SIZES)], 1)
    return {"x": torch.rand(n, 3, 28, 28) * 2 - 1, "y": labels}


def test_gradient_penalty_of_a_quadratic_critic_in_closed_form():
    # f(x) = ||x||^2 / 2 has gradient x; with real = fake every interpolate is x, so GP = mean (||x|| - 1)^2
    x = torch.randn(6, 3, 4, 4)
    penalty = gradient_penalty(lambda images: 0.5 * images.square().flatten(1).sum(1), x, x.clone())
    expected = ((x.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(penalty, expected, rtol=1e-5)


def test_classification_loss_is_the_sum_of_per_group_cross_entropies():
    values = attribute_batch(5)["y"][:, 1:]
    logits = torch.randn(5, sum(GROUP_SIZES))
    expected = sum(F.cross_entropy(block, values[:, g]) for g, block in enumerate(logits.split(list(GROUP_SIZES), 1)))
    assert torch.allclose(classification_loss(logits, values), expected)
    assert torch.equal(predicted_values(one_hot_groups(values, GROUP_SIZES)), values)


def test_labels_are_replicated_over_every_pixel():
    condition = one_hot_groups(torch.tensor([[1, 0, 3, 1]]), GROUP_SIZES)
    assert condition.tolist() == [[0, 1, 1, 0, 0, 0, 0, 1, 0, 1]]
    maps = replicate(condition, 5, 7)
    assert maps.shape == (1, 10, 5, 7) and torch.equal(maps[0, :, 4, 6], condition[0])


def test_the_generator_sees_the_target_label():
    # a replicated label is constant over each image, so instance norm right after the first convolution
    # subtracts it exactly: such a generator is blind to the target (the default normalizes over the batch)
    x = attribute_batch(4)["x"]
    thick, thin = torch.tensor([[1, 0, 0, 0]] * 4), torch.tensor([[0, 1, 3, 1]] * 4)
    torch.manual_seed(0)
    model = genzoo.create("stargan", (3, 28, 28), **TINY).eval()
    assert (model.generate(x, thick) - model.generate(x, thin)).abs().max() > 1e-3
    torch.manual_seed(0)
    blind = genzoo.create("stargan", (3, 28, 28), generator_normalization="instance", **TINY).eval()
    assert (blind.generate(x, thick) - blind.generate(x, thin)).abs().max() < 1e-4


def test_the_film_generator_sees_the_target_only_through_its_normalizations():
    x = attribute_batch(4)["x"]
    thick, thin = torch.tensor([[1, 0, 0, 0]] * 4), torch.tensor([[0, 1, 3, 1]] * 4)
    for norm in ("batch", "instance"):  # with FiLM even instance norm keeps the label, as it enters after the norm
        torch.manual_seed(0)
        model = genzoo.create("stargan", (3, 28, 28), conditioning="film", generator_normalization=norm, **TINY)
        model.eval()
        assert model.generator.network[1].in_channels == 3  # no label maps at the input
        films = [m for m in model.generator.modules() if isinstance(m, FiLMNormalization)]
        assert len(films) == 1 + 2 + 2 * TINY["residual_blocks"]  # every norm: first, down, up, two per block
        assert (model.generate(x, thick) - model.generate(x, thin)).abs().max() > 1e-3
        for film in films:
            film.modulation.weight.data.zero_()  # with no modulation the label has no way in
        assert torch.equal(model.generate(x, thick), model.generate(x, thin))


def test_film_scales_and_shifts_normalized_features_by_the_condition():
    torch.manual_seed(0)
    film = FiLMNormalization("instance", 3, 2)
    film.modulation.weight.data = torch.tensor([[-2.0, 0], [0, 0], [0, 0], [0, 0.5], [0, 0], [0, 0]])
    x = torch.randn(2, 3, 5, 5)
    normalized = (x - x.mean((2, 3), keepdim=True)) / (x.var((2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    out = film(x, torch.tensor([[1.0, 0], [0, 1]]))
    # first condition: scale 1 - 2 = -1 on channel 0 (a sign flip), 1 elsewhere; shift 0; second: shift 0.5 on 0
    assert torch.allclose(out[0], normalized[0] * torch.tensor([-1.0, 1, 1])[:, None, None], atol=1e-5)
    assert torch.allclose(out[1], normalized[1] + torch.tensor([0.5, 0, 0])[:, None, None], atol=1e-5)


def test_the_default_concat_generator_is_the_one_stored_runs_trained():
    # the output of a seeded fresh generator on a fixed input, as it was before FiLM existed (same code path,
    # same parameter creation order); the weights' names are the stored runs' keys
    torch.manual_seed(0)
    model = genzoo.create("stargan", (3, 28, 28), **TINY).eval()
    assert model.config.conditioning == "concat"
    assert not any(isinstance(m, FiLMNormalization) for m in model.generator.modules())
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    targets = torch.tensor([[1, 0, 0, 0], [0, 1, 3, 1], [1, 1, 2, 0], [0, 0, 1, 1]])
    with torch.no_grad():
        change = model.generate(x, targets) - x
    assert abs(change.double().abs().sum().item() - 20.629726558414404) < 1e-3
    expected = torch.tensor(
        [-0.0018162131309509277, -0.002000279724597931, -0.0007184147834777832, -0.003256291151046753]
    )
    assert torch.allclose(change[1, 2, 10, 5:9], expected, atol=1e-6)
    assert "network.1.weight" in model.generator.state_dict() and model.generator.network[1].in_channels == 13


def test_a_run_stored_before_the_conditioning_setting_loads_as_concat(tmp_path):
    model = genzoo.create("stargan", (3, 28, 28), **TINY).eval()
    settings = config_to_dict(model.config)
    del settings["conditioning"]
    runs.write_json(tmp_path / runs.CONFIG, {"model": "stargan", "image_shape": [3, 28, 28], "settings": settings})
    runs.save_weights(model, tmp_path / runs.WEIGHTS)
    loaded = genzoo.load(tmp_path).eval()
    assert loaded.config.conditioning == "concat"
    batch = attribute_batch(4)
    with torch.no_grad():
        assert torch.equal(
            loaded.generate(batch["x"], batch["y"][:, 1:]), model.generate(batch["x"], batch["y"][:, 1:])
        )


def test_film_trains_a_few_batches_to_finite_losses_and_moves_its_modulation():
    torch.manual_seed(0)
    model = genzoo.create("stargan", (3, 28, 28), conditioning="film", critic_steps=1, **TINY)
    film = next(m for m in model.generator.modules() if isinstance(m, FiLMNormalization))
    before = film.modulation.weight.detach().clone()
    batch = attribute_batch()
    for index in range(3):
        logs = model.training_step(batch, DirectStep(model, batch_index=index))
        assert {"reconstruction_loss", "fake_classification_loss"} <= set(logs)
        assert all(torch.isfinite(v) for v in logs.values())
    assert not torch.equal(before, film.modulation.weight)


def test_the_residual_generator_starts_near_its_input_for_every_target():
    torch.manual_seed(0)
    x = render(load_dataset("mnist").test[:8], attribute_batch(8)["y"][:, 1:]).float() / 127.5 - 1
    residual = genzoo.create("stargan", (3, 28, 28), **TINY).eval()
    paper = genzoo.create("stargan", (3, 28, 28), generator_output="image", **TINY).eval()
    for targets in (attribute_batch(8)["y"][:, 1:], torch.zeros(8, 4, dtype=torch.long)):
        assert (residual.generate(x, targets) - x).abs().mean() < 0.05
        assert (paper.generate(x, targets) - x).abs().mean() > 0.3  # a fresh tanh generator is far from x


def test_straight_through_clamp_bounds_values_and_passes_gradients():
    moved = torch.tensor([-3.0, -0.5, 0.2, 1.7], requires_grad=True)
    clamped = straight_through_clamp(moved)
    assert torch.equal(clamped, torch.tensor([-1.0, -0.5, 0.2, 1.0]))
    (clamped * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert moved.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # a clamped pixel still learns


def test_a_score_grid_of_two_gives_four_scores_that_each_see_the_whole_image():
    torch.manual_seed(0)
    critic = PatchDiscriminator(3, 28, 4, normalization="none", score_grid=2)
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    scores = critic(x)[0]
    assert scores.shape == (1, 1, 2, 2)
    for score in scores.flatten():
        (gradient,) = torch.autograd.grad(score, x, retain_graph=True)
        corners = gradient[0, :, [0, 0, -1, -1], [0, -1, 0, -1]].abs().sum(0)  # [4]
        assert (corners > 0).all()
    assert PatchDiscriminator(3, 28, 4)(x)[0].shape == (1, 1, 7, 7)  # 0: one score per patch (CycleGAN)


def test_each_patch_score_sees_a_26_pixel_square():
    torch.manual_seed(0)
    discriminator = PatchDiscriminator(3, 28, 4, normalization="none")  # instance norm would mix in every pixel
    x = torch.randn(1, 3, 28, 28, requires_grad=True)
    (gradient,) = torch.autograd.grad(discriminator(x)[0][0, 0, 3, 3], x)
    rows, columns = gradient[0].abs().sum(0).nonzero().unbind(1)
    assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == (26, 26)


def test_target_spec_keeps_measured_values_of_the_groups_not_named():
    model = genzoo.create("stargan", (3, 28, 28), **TINY)
    source = torch.tensor([[0, 1, 2, 1]])  # thin, right, green, light
    digit = render(load_dataset("mnist").test[:1], source)
    targets = model.target_values(digit.float() / 127.5 - 1, "thick,red")
    assert targets.tolist() == [[1, 1, 1, 1]]  # thick and red as asked; right and light as measured


def test_a_real_training_step_with_the_critic_schedule():
    model = genzoo.create("stargan", (3, 28, 28), critic_steps=5, **TINY)
    batch = attribute_batch()
    generator_before = [p.detach().clone() for p in model.generator.parameters()]
    step = DirectStep(model, batch_index=0)
    logs = model.training_step(batch, step)
    assert step.calls == ["discriminator"] and "gradient_penalty" in logs
    assert all(torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters()))
    step.batch_index = 4  # the fifth batch: G follows the fifth critic update, and the engine logs batch 10, 20...
    logs = model.training_step(batch, step)
    assert step.calls == ["discriminator", "discriminator", "generator"]
    assert {"reconstruction_loss", "fake_classification_loss"} <= set(logs)
    assert any(not torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters()))
    assert all(torch.isfinite(v) for v in logs.values())


def test_the_optional_identity_term_is_g_asked_for_its_own_labels():
    model = genzoo.create("stargan", (3, 28, 28), identity_weight=5.0, **TINY)
    batch = attribute_batch()
    real, own = batch["x"], batch["y"][:, 1:]
    fake = model.generate(real, own.flip(0))
    losses = model.generator_losses(real, fake, own, own.flip(0))
    assert torch.allclose(losses["identity_loss"], (model.generate(real, own) - real).abs().mean())
    expected = losses["generator_loss"] + losses["fake_classification_loss"] + 10 * losses["reconstruction_loss"]
    assert torch.allclose(losses["loss"], expected + 5 * losses["identity_loss"])
    assert "identity_loss" not in genzoo.create("stargan", (3, 28, 28), **TINY).generator_losses(real, fake, own, own)


def test_the_weight_average_follows_g_keeps_its_own_statistics_and_does_the_translating():
    model = genzoo.create("stargan", (3, 28, 28), ema_decay=0.999, critic_steps=5, **TINY)
    batch = attribute_batch()
    start = [p.detach().clone() for p in model.generator_average.parameters()]
    statistics = [b.clone() for b in model.generator_average.buffers()]
    model.training_step(batch, DirectStep(model, batch_index=0))  # a critic-only batch: the average stays
    assert all(torch.equal(a, b) for a, b in zip(start, model.generator_average.parameters()))
    model.training_step(batch, DirectStep(model, batch_index=9))  # G's second update (updates = 9 // 5 = 1)
    for old, new, trained in zip(start, model.generator_average.parameters(), model.generator.parameters()):
        assert torch.allclose(new, (2 / 11) * old + (9 / 11) * trained)  # warm-up decay (1 + 1) / (10 + 1)
    assert any(not torch.equal(a, b) for a, b in zip(statistics, model.generator_average.buffers()))
    model.eval()
    images, values = batch["x"], batch["y"][:, 1:]
    with torch.no_grad():
        translated = model.generate(images, values, model.translator)
        assert model.translator is model.generator_average
        assert torch.equal(
            model.translate(images, "thick"),
            model.generate(images, model.target_values(images, "thick"), model.generator_average),
        )
        assert not torch.allclose(translated, model.generate(images, values))


def test_cli_trains_and_translates_to_several_attributes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    settings = [arg for key, value in {**TINY, "eval_images": 64}.items() for arg in ("--set", f"{key}={value}")]
    # without --max-steps or --max-epochs, train runs the model's own budget (5,300 batches; 10 here)
    monkeypatch.setattr(models.get("stargan"), "default_batches", 10)
    result = runner.invoke(
        app,
        ["train", "stargan", "--data", "mnist-attributes", "--batch-size", "8", "--out", str(run), *settings],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_batches"] == 10
    assert {"thickness_target_accuracy", "colour_target_accuracy", "reconstruction_l1"} <= set(metrics)
    logged = (run / "logs" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert {"critic_loss", "generator_loss", "reconstruction_loss"} <= set(logged[0].split(","))  # G's turn is logged
    assert (run / "samples.png").is_file()

    from PIL import Image

    # the 8 sources, then one row of 8 per attribute value (2 + 2 + 4 + 2): 28-pixel cells, 2-pixel borders, 2x
    assert Image.open(run / "attribute_changes.png").size == ((8 * 30 + 2) * 2, (11 * 30 + 2) * 2)

    Image.new("RGB", (28, 28)).save(tmp_path / "digit.png")
    out = tmp_path / "out.png"
    args = ["translate", str(run), "--input", str(tmp_path / "digit.png"), "--to", "thick,red", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--to", "thin", "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output


def test_one_change_at_a_time_reads_a_generator_that_changes_nothing_as_moving_nothing():
    """With G(x, c) = x every per-group target is missed and the class is kept exactly as often as the reader
    reads the real images: the measures move only with what the generator does."""
    mnist, chosen = load_dataset("mnist"), torch.arange(40) * 25  # the test split is ordered by class
    labels = torch.cat([mnist.test_labels[chosen, None], attribute_batch(40)["y"][:, 1:]], 1)
    images = render(mnist.test[chosen], labels[:, 1:]).float() / 127.5 - 1
    model = genzoo.create("stargan", (3, 28, 28), **TINY).eval()
    model.generate = lambda images, values, network=None: images
    report = model.evaluate(images, labels, 256, "mnist-attributes")
    assert report["unchanged_class_preservation"] == report["real_class_accuracy"] > 0.5
    for group in ("thickness", "slant", "colour", "background"):
        assert report[f"{group}_alone_target_accuracy"] <= 0.05
        assert report[f"{group}_alone_class_preservation"] == report["real_class_accuracy"]
