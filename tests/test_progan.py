"""Progressive GAN: equalized-LR layers, pixel norm, minibatch stddev, fade-in, the growth schedule, a real training
step, exact resume in the middle of a fade-in, and the CLI end to end."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.errors import GenzooError
from genzoo.losses import gradient_penalty
from genzoo.models.adversarial.progan import ProGAN, growth
from genzoo.models.base import DirectStep
from genzoo.nn.progressive import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PixelNorm,
    fade_in,
)

runner = CliRunner()
TINY = {"max_channels": 8, "latent_dim": 16, "eval_samples": 100}


def test_equalized_conv_has_unit_variance_weights_and_scales_them_at_run_time():
    layer = EqualizedConv2d(128, 128, 3)
    assert abs(layer.weight.var().item() - 1) < 0.02 and abs(layer.weight.mean().item()) < 0.01
    assert layer.scale == pytest.approx(math.sqrt(2 / (128 * 9)))
    x = torch.randn(2, 128, 5, 5)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight * layer.scale, layer.bias, padding=1))
    # the stored weight's gradient is the effective weight's gradient times the scale (the "equalized" learning rate)
    effective = (layer.weight * layer.scale).detach().requires_grad_(True)
    F.conv2d(x, effective, layer.bias, padding=1).square().sum().backward()
    layer(x).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, effective.grad * layer.scale)


def test_equalized_linear_scales_by_he_constant_and_keeps_unit_variance_activations():
    layer = EqualizedLinear(512, 256, gain=1.0)
    assert abs(layer.weight.var().item() - 1) < 0.02
    x = torch.randn(4096, 512)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight / math.sqrt(512), layer.bias))
    assert layer(x).var().item() == pytest.approx(1.0, abs=0.05)  # gain 1: unit variance in, unit variance out


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = torch.randn(3, 16, 4, 5) * (torch.rand(3, 1, 4, 5) + 0.1) * 10  # pixels of very different scales
    y = PixelNorm()(x)
    torch.testing.assert_close(y.square().mean(1), torch.ones(3, 4, 5), rtol=0, atol=1e-5)
    torch.testing.assert_close(y / y.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True))  # direction kept


def test_minibatch_stddev_appends_the_group_standard_deviation_channel():
    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (8, 4, 4, 4)
    torch.testing.assert_close(y[:, :3], x)
    for b in range(8):
        group = x[b % 2 :: 2]  # image b is in group b mod (8 / 4)
        expected = group.std(0, unbiased=False).mean()
        torch.testing.assert_close(y[b, 3], torch.full((4, 4), expected.item()), rtol=1e-4, atol=1e-5)
    # a batch of identical images has (almost) no deviation, a varied one has more
    assert MinibatchStdDev()(x[:1].expand(4, -1, -1, -1))[:, 3].max() < 1e-3 < y[:, 3].min()


def test_minibatch_stddev_group_shrinks_to_a_divisor_of_the_batch():
    x = torch.randn(6, 2, 2, 2)  # 4 does not divide 6: groups of 3
    y = MinibatchStdDev(group_size=4)(x)
    torch.testing.assert_close(y[0, 2, 0, 0], x[0::2].std(0, unbiased=False).mean(), rtol=1e-4, atol=1e-5)


def test_fade_in_at_alpha_zero_is_the_upsampled_old_output_and_at_one_the_new():
    low, high = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(fade_in(low, high, 0.0), F.interpolate(low, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(fade_in(low, high, 1.0), high)
    torch.testing.assert_close(fade_in(low, high, 0.25), 0.75 * fade_in(low, high, 0.0) + 0.25 * high)


def test_growing_networks_fade_in_between_resolutions():
    model = genzoo.create("progan", (1, 28, 28), **TINY)
    generator, critic = model.generator, model.discriminator
    latent = model.latent(3)
    features = generator.first(generator.dense(generator.normalize_latent(latent)).view(3, -1, 4, 4))
    for level in range(1, model.levels):
        lower = generator(latent, level - 1, 1.0)
        torch.testing.assert_close(generator(latent, level, 0.0), F.interpolate(lower, scale_factor=2))
        features = generator.blocks[level - 1](features)
        torch.testing.assert_close(generator(latent, level, 1.0), generator.to_rgb[level](features))
        images = torch.randn(4, 1, 4 * 2**level, 4 * 2**level)
        torch.testing.assert_close(critic(images, level, 0.0), critic(F.avg_pool2d(images, 2), level - 1, 1.0))


def test_growth_schedule_by_images_seen():
    phase = 100
    assert growth(0, phase, 4) == (0, 1.0) and growth(99, phase, 4) == (0, 1.0)
    assert growth(100, phase, 4) == (1, 0.0)  # 8x8 starts fading in
    assert growth(150, phase, 4) == (1, 0.5)
    assert growth(200, phase, 4) == (1, 1.0) and growth(299, phase, 4) == (1, 1.0)  # stable
    assert growth(325, phase, 4) == (2, 0.25)
    assert growth(500, phase, 4) == (3, 0.0) and growth(700, phase, 4) == (3, 1.0)
    assert growth(10**6, phase, 4) == (3, 1.0)


def test_samples_at_each_resolution_grown_through_use_the_stage_reached():
    model = genzoo.create("progan", (1, 28, 28), phase_images=100, **TINY).eval()
    latent = model.latent(2)
    model.images_seen.fill_(350)  # level 2 (16x16) fading in, alpha 0.5
    assert model.stage() == (2, 0.5)
    sampler = model.generator_ema
    for level, alpha in ((0, 1.0), (1, 1.0), (2, 0.5)):
        images = model.generate_at(latent, level)
        assert images.shape == (2, 1, 4 * 2**level, 4 * 2**level)
        torch.testing.assert_close(images, sampler(latent, level, alpha).clamp(-1, 1))
    full = F.interpolate(model.generate_at(latent, 2), size=(32, 32), mode="nearest")
    torch.testing.assert_close(model.crop(full), model.generate(latent))  # the samples are the top level's
    with pytest.raises(GenzooError, match="levels 0..2"):
        model.generate_at(latent, 3)  # never trained


def test_28x28_data_is_padded_to_32_with_background_and_cropped_back():
    model = genzoo.create("progan", (1, 28, 28), **TINY)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    padded = model.pad(x)
    assert padded.shape == (2, 1, 32, 32)
    torch.testing.assert_close(model.crop(padded), x)
    assert padded[..., :2, :].eq(-1).all() and padded[..., :, -2:].eq(-1).all()
    assert model.sample(3).shape == (3, 1, 28, 28)
    with pytest.raises(GenzooError, match="resolution"):
        genzoo.create("progan", (1, 28, 28), resolution=16)


def test_progan_does_a_real_wgan_gp_step_at_each_stage():
    model = genzoo.create("progan", (1, 28, 28), phase_images=8, **TINY)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    average_before = [p.clone() for p in model.generator_ema.parameters()]
    for batch_index, resolution in [(0, 4), (1, 8), (3, 16), (5, 32)]:
        generator_before = [p.clone() for p in model.generator.parameters()]
        critic_before = [p.clone() for p in model.discriminator.parameters()]
        step = DirectStep(model, batch_index)
        logs = model.training_step({"x": x}, step)
        assert step.calls == ["discriminator", "generator"]
        assert logs["resolution"] == resolution and all(torch.isfinite(v) for v in logs.values())
        assert any(not torch.equal(a, b) for a, b in zip(generator_before, model.generator.parameters()))
        assert any(not torch.equal(a, b) for a, b in zip(critic_before, model.discriminator.parameters()))
        assert int(model.images_seen) == (batch_index + 1) * 8
    assert any(not torch.equal(a, b) for a, b in zip(average_before, model.generator_ema.parameters()))


def test_the_critic_loss_is_wgan_gp_plus_the_drift_term_on_real_scores():
    # Appendix A.1: L_D = D(G(z)) - D(x) + 10 GP + 0.001 E[D(x)^2], here at 8x8 mid fade-in (phase 16, batch 8)
    model = genzoo.create("progan", (1, 28, 28), phase_images=16, **TINY)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    level, alpha = model.stage(3 * 8)
    assert (level, alpha) == (1, 0.5)
    with torch.no_grad():
        model.discriminator.last[-1].bias.fill_(30.0)  # scores near 30: only the drift term sees the offset
    real = model.reals_at(model.pad(x), level, alpha)
    torch.manual_seed(3)  # the training step's draws, in its order: the latents, then the penalty's mixing
    fake = model.generator(model.latent(8), level, alpha)
    critic = lambda images: model.discriminator(images, level, alpha)  # noqa: E731
    real_scores = critic(real)
    penalty = gradient_penalty(critic, real, fake)
    expected = critic(fake).mean() - real_scores.mean() + 10 * penalty + 0.001 * real_scores.square().mean()
    torch.manual_seed(3)
    logs = model.training_step({"x": x}, DirectStep(model, batch_index=3))
    assert logs["alpha"] == 0.5
    torch.testing.assert_close(logs["gradient_penalty"], penalty.detach())
    torch.testing.assert_close(logs["discriminator_loss"], expected.detach())


def test_reals_fade_between_the_lower_resolution_and_the_new_one_like_the_generator():
    model = genzoo.create("progan", (1, 28, 28), **TINY)
    full = model.pad(torch.rand(2, 1, 28, 28) * 2 - 1)
    at_8 = F.avg_pool2d(full, 4)
    blurred = F.interpolate(F.avg_pool2d(at_8, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(model.reals_at(full, 1, 0.25), 0.75 * blurred + 0.25 * at_8)
    torch.testing.assert_close(model.reals_at(full, 1, 1.0), at_8)
    torch.testing.assert_close(model.reals_at(full, model.levels - 1, 1.0), full)


def test_the_paper_optimizer_settings_and_widths():
    model = genzoo.create("progan", (1, 28, 28))
    optimizers = model.configure_optimizers()
    for name, lr in (("discriminator", 1e-3), ("generator", 2.5e-4)):  # the generator's rate: a stated departure
        group = optimizers[name].param_groups[0]
        assert group["betas"] == (0.0, 0.99) and group["eps"] == 1e-8 and group["lr"] == lr
    # the paper's min(512, 16384 / r) channels scaled by 1/32: 32 at 4x4 to 16x16, 16 at 32x32
    assert [block.layers[1].weight.shape[0] for block in model.generator.blocks] == [32, 32, 16]
    assert model.generator.dense.weight.shape == (32 * 16, 128)


def train_tiny(out, max_steps, resume=False, checkpoint_every=100):
    settings = {"phase_images": 16, **TINY}
    return genzoo.train(
        "progan",
        "mnist",
        max_steps=max_steps,
        batch_size=8,
        out=out,
        resume=resume,
        settings=settings,
        checkpoint_every=checkpoint_every,
        progress=False,
        samples=4,
    )


class Interrupted(Exception):
    pass


def test_resume_in_the_middle_of_a_fade_in_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    # batch 8, phase 16 images: batches 2-3 fade 8x8 in (alpha 0, 0.5); the resumed run starts at alpha 0.5
    assert growth(3 * 8, 16, 4) == (1, 0.5)
    train_tiny(tmp_path / "straight", 5)

    train_step = ProGAN.training_step

    def crash_at_batch_3(model, batch, step):
        if step.batch_index == 3:
            raise Interrupted
        return train_step(model, batch, step)

    monkeypatch.setattr(ProGAN, "training_step", crash_at_batch_3)
    with pytest.raises(Interrupted):
        train_tiny(tmp_path / "split", 5, checkpoint_every=3)
    monkeypatch.undo()
    run = train_tiny(tmp_path / "split", 5, resume=True)
    assert run.metrics["train_batches"] == 5
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    actual = load_file(tmp_path / "split" / "model.safetensors")
    assert int(actual["images_seen"]) == 5 * 8
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_cli_trains_progan_at_resolution_32_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = ["train", "progan", "--data", "mnist", "--max-steps", "2", "--batch-size", "8", "--out", str(out)]
    for key, value in {"resolution": 32, **TINY}.items():
        args += ["--set", f"{key}={value}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "progan" and metrics["generated_samples"] == 100
    assert math.isfinite(metrics["frechet_distance"])
    assert (out / "samples.png").stat().st_size > 0
    grid = tmp_path / "grid.png"
    assert runner.invoke(app, ["sample", str(out), "--n", "4", "--out", str(grid)]).exit_code == 0
    assert grid.is_file()
