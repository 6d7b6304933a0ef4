"""CycleGAN: the cycle loss vanishes exactly for inverse maps, the image pool's probability, a real optimisation
step, and the CLI end to end with ``genzoo translate``."""

import copy
import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.errors import GenzooError
from genzoo.models.base import DirectStep, linear_decay
from genzoo.models.translation.base import cycle_loss
from genzoo.models.translation.cyclegan import domain_members
from genzoo.nn.translation import ImagePool, ResnetGenerator, call_on_each

TINY = {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4}
runner = CliRunner()


class Affine(nn.Module):
    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = nn.Parameter(torch.tensor(scale)), nn.Parameter(torch.tensor(shift))

    def forward(self, x):
        return self.scale * x + self.shift


def attribute_batch(n=16):
    labels = torch.zeros(n, 5, dtype=torch.long)
    labels[:, 0] = torch.arange(n) % 10
    labels[:, 1] = torch.arange(n) % 2  # thin / thick alternate
    return {"x": torch.rand(n, 3, 28, 28) * 2 - 1, "y": labels}


def test_cycle_loss_is_zero_for_inverse_maps_and_positive_otherwise():
    model = genzoo.create("cyclegan", (3, 28, 28), **TINY, cycle_noise=0.0)  # the paper's cycle
    model.generator_ab, model.generator_ba = Affine(2.0, 0.5), Affine(0.5, -0.25)  # exact inverses
    batch = attribute_batch()
    a, b = batch["x"][::2], batch["x"][1::2]
    assert float(model.generator_losses(a, b)["cycle_loss"]) == pytest.approx(0.0, abs=1e-6)
    model.generator_ba = Affine(0.5, 0.0)  # no longer the inverse: error |0.25| per pixel in each direction
    assert float(model.generator_losses(a, b)["cycle_loss"]) == pytest.approx(0.25 + 0.5, rel=1e-5)
    assert cycle_loss(torch.ones(2, 3), torch.zeros(2, 3)) == 1.0


def test_the_cycle_reads_each_translation_through_noise_of_the_set_std():
    sigma = 0.2
    model = genzoo.create("cyclegan", (3, 28, 28), **TINY, cycle_noise=sigma)
    model.generator_ab, model.generator_ba = Affine(2.0, 0.5), Affine(0.5, -0.25)  # exact inverses
    batch = attribute_batch()
    a, b = batch["x"][::2], batch["x"][1::2]
    torch.manual_seed(0)
    cycle = float(model.generator_losses(a, b)["cycle_loss"])
    # F(G(a) + n) - a = 0.5 n and G(F(b) + n') - b = 2 n': E|n| = sigma sqrt(2 / pi) scaled by 0.5 and by 2;
    # each mean runs over 18,816 pixels, so its relative standard error is about 0.6%
    assert cycle == pytest.approx(2.5 * sigma * (2 / torch.pi) ** 0.5, rel=0.03)


def test_the_generators_adversarial_term_is_the_papers_least_squares_at_the_papers_weight():
    model = genzoo.create("cyclegan", (3, 28, 28), **TINY)
    model.generator_ab, model.generator_ba = Affine(2.0, 0.5), Affine(0.5, -0.25)
    batch = attribute_batch()
    a, b = batch["x"][::2], batch["x"][1::2]
    losses = {name: float(value) for name, value in model.generator_losses(a, b).items() if value.dim() == 0}
    with torch.no_grad():  # E[(D(G(x)) - 1)^2] in both directions, as the paper writes it
        paper = ((model.discriminator_b(2 * a + 0.5)[0] - 1) ** 2).mean()
        paper += ((model.discriminator_a(0.5 * b - 0.25)[0] - 1) ** 2).mean()
    assert losses["generator_loss"] == pytest.approx(float(paper), rel=1e-5)
    expected = float(paper) + 10 * losses["cycle_loss"] + 5 * losses["identity_loss"]
    assert losses["loss"] == pytest.approx(expected, rel=1e-5)


def test_image_pool_returns_history_with_probability_one_half():
    generator = torch.Generator().manual_seed(0)
    pool = ImagePool(50, (1,), generator)
    first = torch.arange(50.0)[:, None]
    assert torch.equal(pool.query(first), first)  # while filling, every image passes through and is stored
    queries, from_history = 4000, 0
    for i in range(queries):
        new = torch.tensor([[1000.0 + i]])
        returned = pool.query(new)
        from_history += int(returned.item() != new.item())
        assert int(pool.filled) == 50
    # Binomial(4000, 1/2): standard deviation ~32, so 0.5 +- 0.04 is more than 6 sigma
    assert abs(from_history / queries - 0.5) < 0.04
    assert ImagePool(0, (1,)).query(first) is first


def test_returned_history_images_are_past_generated_images():
    pool = ImagePool(4, (1,), torch.Generator().manual_seed(1))
    seen = set()
    for i in range(200):
        value = float(i)
        returned = pool.query(torch.tensor([[value]])).item()
        assert returned == value or returned in seen
        seen.add(value)


def test_learning_rate_is_constant_then_decays_linearly_to_zero():
    assert [linear_decay(t, 100, 0.5) for t in (0, 50, 75, 100)] == [1.0, 1.0, 0.5, 0.0]
    assert linear_decay(10, None, 0.5) == 1.0


def test_batches_are_split_into_domains_by_their_labels():
    labels = attribute_batch(6)["y"]
    labels[:, 3] = torch.tensor([1, 1, 0, 0, 1, 0])  # colour red / white
    assert domain_members(labels, {0: 1, 2: 1}).tolist() == [False, True, False, False, False, False]


def test_a_real_training_step_updates_all_four_networks():
    model = genzoo.create("cyclegan", (3, 28, 28), **TINY)
    networks = (model.generator_ab, model.generator_ba, model.discriminator_a, model.discriminator_b)
    before = [[p.detach().clone() for p in n.parameters()] for n in networks]
    step = DirectStep(model, batch_index=75, max_batches=100)
    logs = model.training_step(attribute_batch(), step)
    assert step.calls == ["generator", "discriminator"]
    assert step.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-4)  # half the rate of 2e-4
    for network, old in zip(networks, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, network.parameters()))
    assert all(torch.isfinite(v) for v in logs.values())


def test_batch_norm_generators_keep_running_statistics_of_their_translations_only():
    # evaluation normalizes with the running statistics: the identity and cycle passes (real images of the target
    # domain, noisy translations) must not move them, or evaluation normalizes with a mix training never saw
    model = genzoo.create("cyclegan", (3, 28, 28), **TINY, generator_normalization="batch")
    batch = attribute_batch()
    real_a = batch["x"][domain_members(batch["y"], model.domain_a)]
    reference = copy.deepcopy(model.generator_ab)
    reference(real_a)  # the translation pass alone, with the weights before the step
    model.training_step(batch, DirectStep(model, 0, 100))
    norms = [m for m in model.generator_ab.modules() if isinstance(m, nn.BatchNorm2d)]
    expected = [m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.running_mean, e.running_mean) for m, e in zip(norms, expected, strict=True))
    assert all(int(m.num_batches_tracked) == 1 for m in norms)


def test_the_weight_averages_follow_the_generators_and_do_the_translating():
    model = genzoo.create("cyclegan", (3, 28, 28), ema_decay=0.999, **TINY)
    plain = genzoo.create("cyclegan", (3, 28, 28), **TINY)  # ema_decay 0: the generators translate themselves
    assert plain.average_ab is None and plain.translators == (plain.generator_ab, plain.generator_ba)
    start = [p.detach().clone() for p in model.average_ab.parameters()]
    model.training_step(attribute_batch(), DirectStep(model, batch_index=0))
    for old, new, trained in zip(start, model.average_ab.parameters(), model.generator_ab.parameters()):
        assert torch.allclose(new, 0.1 * old + 0.9 * trained)  # the first update: decay 1/10 (warm-up)
    images = attribute_batch(4)["x"]
    with torch.no_grad():
        assert torch.equal(model.translate(images, "B"), model.average_ab(images))
        assert torch.equal(model.translate(images, "A"), model.average_ba(images))
        assert not torch.allclose(model.translate(images, "B"), model.generator_ab(images))


@pytest.mark.parametrize("output", ["image", "residual"])
@pytest.mark.parametrize("downsamplings", [1, 2])
def test_resnet_generator_keeps_the_image_shape_and_range(downsamplings, output):
    torch.manual_seed(0)
    generator = ResnetGenerator(3, width=4, blocks=1, downsamplings=downsamplings, output=output)
    bottleneck = [m for m in generator.network if isinstance(m, nn.Conv2d)][downsamplings]  # last stride-2 conv
    assert bottleneck.stride == (2, 2) and bottleneck.out_channels == 4 * 2**downsamplings
    out = generator(torch.randn(2, 3, 28, 28) * 3)
    assert out.shape == (2, 3, 28, 28) and out.abs().max() <= 1
    images = torch.rand(2, 3, 28, 28) * 2 - 1
    change = (generator(images) - images).abs().mean()
    assert change < 0.1 if output == "residual" else change > 0.3  # the residual form starts near its input


@pytest.mark.parametrize("normalization", ["instance", "batch"])
def test_calling_a_generator_on_two_batches_together_gives_the_separate_results(normalization):
    torch.manual_seed(0)
    generator = ResnetGenerator(3, width=4, blocks=1, normalization=normalization)
    a, b = torch.randn(3, 3, 28, 28), torch.randn(5, 3, 28, 28) + 1  # b: other statistics, which batch norm keeps
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    separate = [generator(a), generator(b)]  # training mode: each normalized with its own batch statistics
    for m in norms:
        m.reset_running_stats()
    generator(a)
    after_a = [m.running_mean.clone() for m in norms]  # the running statistics of a (the translation) alone
    for m in norms:
        m.reset_running_stats()
    for one, other in zip(call_on_each(generator, a, b), separate, strict=True):
        torch.testing.assert_close(one, other, rtol=1e-5, atol=1e-5)
    if normalization == "batch":
        # the running statistics (evaluation's) come from the first input only; b's pass leaves them alone
        for m, expected in zip(norms, after_a, strict=True):
            torch.testing.assert_close(m.running_mean, expected)
        assert not torch.allclose(generator(torch.cat([a, b])), torch.cat(separate), atol=1e-3)  # mixing differs


def test_a_residual_generator_must_keep_its_input_channels():
    with pytest.raises(ValueError, match="input's channels"):
        ResnetGenerator(3, out_channels=1, width=4, blocks=1, output="residual")


def test_overlapping_domains_are_refused():
    with pytest.raises(GenzooError, match="overlap"):
        genzoo.create("cyclegan", (3, 28, 28), domain_a="thin", domain_b="red")


def test_cli_trains_samples_and_translates(tmp_path):
    run = tmp_path / "run"
    settings = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]
    result = runner.invoke(
        app,
        ["train", "cyclegan", "--data", "mnist-attributes", "--max-steps", "2", "--batch-size", "16",
         "--set", "eval_images=64", "--out", str(run), *settings],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"a_to_b_target_accuracy", "a_to_b_cycle_l1", "b_to_a_target_accuracy"} <= set(metrics)
    assert (run / "samples.png").is_file()

    from PIL import Image

    # rows A, G(A), F(G(A)) of 8 images each: 28-pixel cells with 2-pixel borders, drawn at 2x
    assert Image.open(run / "translations.png").size == ((8 * 30 + 2) * 2, (3 * 30 + 2) * 2)

    Image.new("RGB", (28, 28)).save(tmp_path / "digit.png")
    result = runner.invoke(app, ["translate", str(run), "--input", str(tmp_path / "digit.png"), "--to", "B"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "digit-to-B.png").size[0] > 28
    result = runner.invoke(app, ["translate", str(run), "--input", str(tmp_path / "digit.png"), "--to", "C"])
    assert result.exit_code != 0
