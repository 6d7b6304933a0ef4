"""GAN, DCGAN, InfoGAN: real optimisation steps, what each update may touch, shapes, codes, and the CLI end to end."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.errors import GenzooError
from genzoo.models.adversarial.base import frozen, update_weight_average, weight_average
from genzoo.models.adversarial.dcgan import Projection
from genzoo.models.base import DirectStep
from test_text2image import attribute_batch

runner = CliRunner()
SUITE_KEYS = {
    "feature_net",
    "real_samples",
    "generated_samples",
    "frechet_distance",
    "kid",
    "precision",
    "recall",
    "inception_score_analogue",
}


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return all(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize("name", ["gan", "dcgan", "infogan"])
def test_each_gan_does_a_real_optimisation_step(name):
    model = genzoo.create(name)
    model.train()
    batch = {"x": torch.rand(8, 1, 28, 28) * 2 - 1}
    generator_before, discriminator_before = snapshot(model.generator), snapshot(model.discriminator)
    step = DirectStep(model)
    logs = model.training_step(batch, step)
    assert step.calls == ["discriminator", "generator"]
    assert changed(generator_before, model.generator) and changed(discriminator_before, model.discriminator)
    assert all(torch.isfinite(v) for v in logs.values())


@pytest.mark.parametrize("batch_norm", [False, True])
def test_gan_networks_have_the_papers_sizes(batch_norm):
    # G: 100 -> 1200 -> 1200 -> 784 (batch norm's scale and shift replace the hidden biases); D: two maxout layers
    # of 240 units x 5 pieces -> 1 logit (Goodfellow et al. 2014, MNIST)
    model = genzoo.create("gan", generator_batch_norm=batch_norm)
    hidden_biases = 2 * 1200 * (2 if batch_norm else 1)
    generator = 100 * 1200 + 1200 * 1200 + 1200 * 784 + 784 + hidden_biases
    discriminator = (784 + 1) * 240 * 5 + (240 + 1) * 240 * 5 + 240 + 1
    assert sum(p.numel() for p in model.generator.parameters()) == generator
    assert sum(p.numel() for p in model.discriminator.parameters()) == discriminator
    batch_norms = [m for m in model.generator.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(batch_norms) == (2 if batch_norm else 0)


def test_generator_update_leaves_the_discriminator_gradients_untouched():
    model = genzoo.create("dcgan")
    latent = model.latent(4)
    losses = model.generator_step(latent, model.generate(latent))
    losses["loss"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    assert all(p.requires_grad for p in model.discriminator.parameters())  # frozen() restored the flags


def test_infogan_information_loss_trains_q_trunk_and_g_but_never_ds_head():
    # Q is the shared trunk plus its head: L_I on generated images reaches the trunk, the Q head and G, never D's
    # own output head; the optimizer that owns the trunk (D's) applies it, the generator's owns G alone
    model = genzoo.create("infogan")
    latent = model.latent(8)
    fake = model.generate(latent)
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    model.discriminator_step(real, fake, latent)["q_info_loss"].backward()
    assert all(p.grad is None for p in model.discriminator.head.parameters())
    assert all(p.grad is None for p in model.generator.parameters())  # the discriminator's step sees fake detached
    for network in (model.discriminator.trunk, model.q_head):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())

    model.zero_grad(set_to_none=True)
    model.generator_step(latent, model.generate(latent))["info_loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    optimizers = model.configure_optimizers()
    owned = {name: {id(p) for group in opt.param_groups for p in group["params"]} for name, opt in optimizers.items()}
    assert owned["generator"] == {id(p) for p in model.generator.parameters()}
    assert owned["discriminator"] == {id(p) for p in [*model.discriminator.parameters(), *model.q_head.parameters()]}


def test_infogan_generator_update_moves_no_discriminator_or_q_parameter():
    model = genzoo.create("infogan")
    latent = model.latent(8)
    model.generator_step(latent, model.generate(latent))["loss"].backward()
    assert all(p.grad is None for p in [*model.discriminator.parameters(), *model.q_head.parameters()])
    assert all(p.requires_grad for p in [*model.discriminator.parameters(), *model.q_head.parameters()])


def test_infogan_augmentation_shows_d_and_q_only_shifted_images():
    # augment_shift translates every image D and Q see in training, real and generated alike; evaluation and
    # sampling see the images as they are
    torch.manual_seed(0)
    model = genzoo.create("infogan")  # augment_shift=2 by default
    seen = []
    model.discriminator.trunk.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    real = torch.zeros(4, 1, 28, 28)
    real[:, :, 10:18, 10:18] = 1  # a square away from the border: its position shows the shift
    model.training_step({"x": real}, DirectStep(model))
    real_seen = seen[1]  # D's step: fake features first (the Q term), then the real batch
    assert real_seen.shape == real.shape and not torch.equal(real_seen, real)
    rows = real_seen[:, 0].amax(2).argmax(1)  # first lit row of each image: 10 moved by the shift
    assert ((rows - 10).abs() <= 2).all() and (rows != 10).any()
    assert torch.equal(genzoo.create("infogan", augment_shift=0).augment(real), real)  # the paper's InfoGAN


def test_infogan_q_learns_the_categorical_code_of_fixed_samples():
    # the bound's gradient reaches Q: trained on G's samples alone, Q recovers the codes that made them
    model = genzoo.create("infogan")
    optimizer = torch.optim.Adam(model.q_head.parameters(), lr=1e-2)
    latent = model.latent(64)
    with torch.no_grad():
        features = model.discriminator.trunk(model.generate(latent))
    first = float(model.information_losses(latent, features)["categorical_information_bound"])
    for _ in range(30):
        losses = model.information_losses(latent, features)
        optimizer.zero_grad()
        losses["info_loss"].backward()
        optimizer.step()
    assert float(losses["categorical_information_bound"]) > first + 1.0  # nats, out of log 10 = 2.3


def test_weight_average_is_an_exponential_average_with_a_warm_up():
    current = torch.nn.Linear(2, 2)
    average = weight_average(current, 0.99)
    assert weight_average(current, 0.0) is None and not any(p.requires_grad for p in average.parameters())
    start = [p.detach().clone() for p in average.parameters()]
    with torch.no_grad():
        for p in current.parameters():
            p.add_(1.0)
    update_weight_average(average, current, 0.99, updates=0)  # warm-up: decay min(0.99, 1 / 10)
    for old, new, weight in zip(start, average.parameters(), current.parameters()):
        assert torch.allclose(new, 0.1 * old + 0.9 * weight)
    after_warm_up = [p.detach().clone() for p in average.parameters()]
    update_weight_average(average, current, 0.99, updates=10_000)  # past the warm-up: the decay itself
    for old, new, weight in zip(after_warm_up, average.parameters(), current.parameters()):
        assert torch.allclose(new, 0.99 * old + 0.01 * weight)
    update_weight_average(None, current, 0.99)  # no average: nothing to do


def test_frozen_restores_flags_even_on_error():
    layer = torch.nn.Linear(2, 2)
    layer.bias.requires_grad_(False)
    with pytest.raises(RuntimeError), frozen(layer):
        assert not layer.weight.requires_grad
        raise RuntimeError
    assert layer.weight.requires_grad and not layer.bias.requires_grad


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_dcgan_sizes(shape):
    model = genzoo.create("dcgan", image_shape=shape, width=8).eval()
    images = model.sample(2)
    assert images.shape == (2, *shape) and images.abs().max() <= 1
    assert model.discriminate(images).shape == (2,)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_dcgan_projection_is_the_transposed_convolution_it_replaces(layout):
    # the same values and gradients as ConvTranspose2d with the same weight (so checkpoints keep their meaning),
    # whichever layout the weight is in
    layer = Projection(10, 6, 4).to(memory_format=layout)
    latent = torch.randn(5, 10, 1, 1, requires_grad=True)
    reference = torch.nn.functional.conv_transpose2d(latent, layer.weight)
    upstream = torch.randn_like(reference)
    want = torch.autograd.grad(reference, [latent, layer.weight], upstream)
    got = layer(latent)
    torch.testing.assert_close(got, reference)
    for a, b in zip(torch.autograd.grad(got, [latent, layer.weight], upstream), want):
        torch.testing.assert_close(a, b)


def test_dcgan_rejects_sizes_it_cannot_build():
    with pytest.raises(GenzooError, match="power of two"):
        genzoo.create("dcgan", image_shape=(1, 36, 36))


def test_unknown_adversarial_loss_fails_at_creation():
    with pytest.raises(GenzooError, match="non-saturating"):
        genzoo.create("gan", loss="vanilla")


def test_infogan_code_option_and_traversals():
    model = genzoo.create("infogan").eval()
    assert (model.split_latent(model.latent(5, categories=torch.full((5,), 3)))[1] == 3).all()
    torch.manual_seed(0)
    fixed = model.sample(4, code=3)
    torch.manual_seed(0)
    assert torch.equal(fixed, model.generate(model.latent(4, categories=torch.full((4,), 3))))
    for code in ("categorical", "c1", "c2"):
        grid = model.sample(1, traverse=code)
        assert grid.shape == (100, 1, 28, 28)
    columns = model.sample(1, traverse="categorical").view(10, 10, -1)
    assert not torch.equal(columns[0, 0], columns[0, 1])  # a row varies with the category
    with pytest.raises(GenzooError):
        model.sample(2, code=10)


def test_infogan_images_from_given_codes_match_the_traversal_and_refuse_wrong_codes():
    model = genzoo.create("infogan", latent_dim=6).eval()
    torch.manual_seed(0)
    grid = model.traversal("c2")  # row k: category k; columns: c2 from -2 to 2, noise and c1 fixed
    torch.manual_seed(0)
    noise, _, continuous = model.split_latent(model.latent(1))
    codes = continuous.repeat(2, 1)
    codes[:, 1] = torch.tensor([-2.0, 2.0])
    images = model.generate_from_codes(noise.expand(2, -1), torch.tensor([4, 4]), codes)
    assert torch.allclose(images[0], grid[40], atol=1e-6) and torch.allclose(images[1], grid[49], atol=1e-6)
    assert not torch.allclose(images[0], images[1])
    with pytest.raises(GenzooError, match="categories"):
        model.generate_from_codes(noise, torch.tensor([10]), continuous)
    with pytest.raises(GenzooError, match="continuous 2"):
        model.generate_from_codes(noise, torch.tensor([1]), continuous[:, :1])


def test_cli_trains_dcgan_end_to_end_and_eval_repeats_its_numbers(tmp_path):
    out = tmp_path / "dcgan"
    args = ["train", "dcgan", "--max-steps", "2", "--out", str(out), "--set", "eval_samples=300", "--set", "width=16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "samples.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert SUITE_KEYS <= metrics.keys()
    assert metrics["generated_samples"] == 300 and metrics["real_samples"] > 0
    assert metrics["feature_net"] == "genzoo-features/mnist"
    result = runner.invoke(app, ["eval", str(out)])
    assert result.exit_code == 0, result.output
    again = json.loads(result.output)
    for key in SUITE_KEYS:
        assert again[key] == metrics[key], key


def test_cli_infogan_code_sample_and_code_accuracy(tmp_path):
    out = tmp_path / "infogan"
    args = ["train", "infogan", "--max-steps", "2", "--out", str(out), "--set", "eval_samples=200"]
    assert runner.invoke(app, args).exit_code == 0
    assert all((out / f"traversal_{code}.png").stat().st_size > 0 for code in ("categorical", "c1", "c2"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.1 <= metrics["code_accuracy"] <= 1 and 0.1 <= metrics["generated_code_accuracy"] <= 1
    for options in (["--code", "3"], ["--traverse", "c1"]):
        grid = tmp_path / f"{options[1]}.png"
        result = runner.invoke(app, ["sample", str(out), "--n", "16", "--out", str(grid), *options])
        assert result.exit_code == 0, result.output
        assert grid.stat().st_size > 0


LAYOUT_MODELS = {
    "dcgan": {"width": 8},
    "infogan": {},
    "stargan": {"generator_width": 8, "discriminator_width": 8, "critic_steps": 1},
    "text2image": {"width": 8, "latent_dim": 8, "text_dim": 8, "compressed_dim": 4, "word_dim": 8,
                   "text_pretrain_batches": 0},
}  # fmt: skip


@pytest.mark.parametrize("name", LAYOUT_MODELS)
def test_channels_last_changes_the_memory_order_and_not_the_training_step(name):
    batch = attribute_batch()  # 8 images in [-1, 1] with [class, thickness, slant, colour, background] labels
    runs = {}
    for layout in (True, False):
        torch.manual_seed(0)
        model = genzoo.create(name, (3, 28, 28), channels_last=layout, **LAYOUT_MODELS[name])
        convolutions = [p for p in model.parameters() if p.dim() == 4]
        wanted = torch.channels_last if layout else torch.contiguous_format
        assert convolutions and all(p.is_contiguous(memory_format=wanted) for p in convolutions)
        step = DirectStep(model)
        # plain SGD: an update proportional to the gradient, where Adam's first step is +-lr for any tiny gradient
        step.optimizers = {
            key: torch.optim.SGD([p for group in o.param_groups for p in group["params"]], lr=0.1)
            for key, o in step.optimizers.items()
        }
        torch.manual_seed(1)
        logs = model.training_step(batch, step)
        runs[layout] = (logs, [p.detach().contiguous() for p in model.parameters()])
    (logs, weights), (plain_logs, plain_weights) = runs[True], runs[False]
    for key in plain_logs:
        torch.testing.assert_close(logs[key], plain_logs[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(weights, plain_weights):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gan_reports_the_papers_parzen_window_on_its_evaluation_samples():
    # the window sits on the same eval_samples images the feature suite scores; sigma is fitted on the first half
    # of the test images and the second half is scored
    model = genzoo.create("gan", generator_hidden=32, discriminator_units=8, eval_samples=60).eval()
    x = torch.rand(41, 1, 28, 28) * 2 - 1
    metrics = model.evaluate(x, None, 256, data="mnist")
    assert SUITE_KEYS <= metrics.keys()
    assert (metrics["parzen_samples"], metrics["parzen_validation_images"], metrics["parzen_test_images"]) == (
        60,
        20,
        21,
    )
    assert metrics["parzen_sigma"] > 0 and math.isfinite(metrics["parzen_log_likelihood_nats"])
