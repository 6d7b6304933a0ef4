"""VAE: closed-form KL, the ordering ELBO <= L_k <= L_k', IWAE -> exact log p(x) on probabilistic PCA, the pixel
likelihoods' normalization, a real training step, the latent tools, and the CLI end to end."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.data import load_dataset
from genzoo.data.transforms import prepare_test
from genzoo.errors import GenzooError
from genzoo.latent_exploration import interpolate, manifold, slerp, traversal
from genzoo.models.base import DirectStep
from genzoo.models.latent.base import BernoulliPixels, DiscretizedLogisticPixels
from genzoo.models.latent.vae import diagonal_gaussian_log_prob, gaussian_kl

runner = CliRunner()


def digits_batch(kind, count=64):
    dataset = load_dataset("digits")
    return prepare_test(dataset.test[:count], kind, dataset.levels)


def test_closed_form_kl_matches_monte_carlo():
    mean, log_var = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    z = mean + torch.exp(0.5 * log_var) * torch.randn(400_000, 4, 3, dtype=torch.float64)
    log_ratio = diagonal_gaussian_log_prob(z, mean, log_var) - diagonal_gaussian_log_prob(z, 0 * mean, 0 * log_var)
    standard_error = log_ratio.std(0) / math.sqrt(len(z))
    assert torch.all((log_ratio.mean(0) - gaussian_kl(mean, log_var)).abs() < 4 * standard_error)


def test_elbo_below_iwae_bounds_that_increase_with_k():
    torch.manual_seed(1)
    model = genzoo.create("vae", (1, 8, 8), hidden=32, latent=4)
    with torch.no_grad():
        model.decoder[-2].weight.mul_(4)  # a decoder that depends strongly on z: a poor q, wide bound gaps
    x = digits_batch("binary")
    repeats = 4
    runs = {k: torch.stack([model.bounds(x, k)[1] for _ in range(repeats)]) for k in (1, 5, 50)}  # [R, B]
    elbo = torch.stack([model.bounds(x, 50)[0] for _ in range(repeats)])
    mean = {k: float(v.mean()) for k, v in runs.items()}
    noise = {k: float(v.std() / math.sqrt(v.numel())) for k, v in runs.items()}  # standard error of the mean
    assert abs(mean[1] - float(elbo.mean())) < 4 * noise[1]  # L_1 is the ELBO
    assert mean[5] - float(elbo.mean()) > 4 * noise[1]
    assert mean[50] - mean[5] > 4 * noise[5]


def probabilistic_pca_vae(noise_std, exact_posterior):
    """A linear-Gaussian VAE set to pPCA x = W z + mu + noise; W's columns are orthogonal so that the exact
    posterior is a diagonal Gaussian the encoder can represent."""
    torch.manual_seed(2)
    model = genzoo.create("vae", (1, 2, 3), architecture="linear", likelihood="gaussian", latent=2).double()
    basis, _ = torch.linalg.qr(torch.randn(6, 2, dtype=torch.float64))
    weight, offset = basis * torch.tensor([1.5, 0.7], dtype=torch.float64), 0.3 * torch.randn(6, dtype=torch.float64)
    encoder, decoder = model.encoder[1], model.decoder[0]
    with torch.no_grad():
        decoder.weight.copy_(weight)
        decoder.bias.copy_(offset)
        model.pixels.log_std.fill_(math.log(noise_std))
        precision = weight.T @ weight + noise_std**2 * torch.eye(2, dtype=torch.float64)  # diagonal
        posterior_weight = torch.linalg.solve(precision, weight.T)  # [2, 6]
        encoder.weight.zero_()
        encoder.weight[:2] = posterior_weight
        encoder.bias[:2] = -posterior_weight @ offset
        encoder.bias[2:] = torch.log(noise_std**2 / torch.diagonal(precision))
        if not exact_posterior:
            encoder.bias[:2] += 0.4
            encoder.bias[2:] += 0.8
    covariance = weight @ weight.T + noise_std**2 * torch.eye(6, dtype=torch.float64)
    marginal = torch.distributions.MultivariateNormal(offset, covariance)
    return model, marginal


def test_iwae_is_exact_for_ppca_with_the_true_posterior():
    model, marginal = probabilistic_pca_vae(0.5, exact_posterior=True)
    x = marginal.sample((16,))
    exact = marginal.log_prob(x)
    elbo, single = model.bounds(x.view(16, 1, 2, 3), k=1)
    assert torch.allclose(single, exact, atol=1e-9) and torch.allclose(elbo, exact, atol=1e-9)


def test_iwae_converges_to_the_exact_ppca_marginal_likelihood():
    model, marginal = probabilistic_pca_vae(0.5, exact_posterior=False)
    x = marginal.sample((16,))
    exact = marginal.log_prob(x)
    images = x.view(16, 1, 2, 3)
    gaps = [float((exact - model.bounds(images, k=k)[1]).mean()) for k in (1, 100, 20_000)]
    assert gaps[0] > 10 * gaps[1] > 0 and abs(gaps[2]) < 0.01


def test_discretized_logistic_sums_to_one_over_levels():
    for levels in (4, 256):
        pixels = DiscretizedLogisticPixels(levels)
        x = torch.arange(levels).view(levels, 1, 1, 1)
        for mean, log_scale in [(-1.2, -3.0), (0.0, -1.0), (0.3, 0.5), (1.5, 2.0), (0.1, -6.0)]:
            params = torch.tensor([mean, log_scale], dtype=torch.float64).view(1, 2, 1, 1).expand(levels, 2, 1, 1)
            assert float(pixels.log_prob(x, params).exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_bernoulli_pixels_sum_to_one():
    logits = torch.randn(1, 1, 1, 3, dtype=torch.float64)
    images = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=torch.float64)
    log_p = BernoulliPixels().log_prob(images.view(8, 1, 1, 3), logits.expand(8, 1, 1, 3))
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"objective": "iwae", "k": 3},
        {"architecture": "conv", "likelihood": "logistic"},
    ],
)
def test_training_steps_lower_the_loss_and_log_both_terms(settings):
    torch.manual_seed(3)
    model = genzoo.create("vae", (1, 8, 8), hidden=32, latent=4, **settings)
    dataset = load_dataset("digits")
    x = prepare_test(dataset.train[:64], model.input_kind, dataset.levels)
    step = DirectStep(model)
    first = model.training_step({"x": x}, step)
    assert {"loss", "reconstruction", "kl"} <= first.keys()
    if "objective" not in settings:
        assert float(first["loss"]) == pytest.approx(float(first["reconstruction"] + first["kl"]), rel=1e-5)
    for _ in range(15):
        last = model.training_step({"x": x}, step)
    assert float(last["loss"]) < float(first["loss"])


def test_logistic_levels_must_match_the_data():
    model = genzoo.create("vae", (1, 8, 8), hidden=16, latent=2, likelihood="logistic", levels=16)
    x = digits_batch("levels", 8)  # 256 levels
    with pytest.raises(GenzooError, match="--set levels=256"):
        model.training_step({"x": x}, DirectStep(model))
    with pytest.raises(GenzooError, match="--set levels=256"):
        model.evaluate(x, None, 256)


def test_interpolation_ends_at_the_reconstructions_and_slerp_keeps_the_norm():
    model = genzoo.create("vae", (1, 8, 8), hidden=16, latent=3)
    x = digits_batch("binary", 4)
    path = interpolate(model, x[:2], x[2:], steps=5).view(2, 5, 1, 8, 8)
    assert torch.allclose(path[:, 0], model.reconstruct(x[:2]), atol=1e-6)
    assert torch.allclose(path[:, -1], model.reconstruct(x[2:]), atol=1e-6)
    start = torch.tensor([[3.0, 0.0, 0.0]])
    end = torch.tensor([[0.0, 0.0, 3.0]])
    arc = slerp(start, end, torch.linspace(0, 1, 7))
    assert torch.allclose(arc.norm(dim=-1), torch.full((1, 7), 3.0), atol=1e-5)


def test_traversal_and_manifold_change_the_right_coordinates(monkeypatch):
    model = genzoo.create("vae", (1, 8, 8), hidden=16, latent=2)
    monkeypatch.setattr(model, "decode", lambda z: z)  # expose the decoded codes
    x = digits_batch("binary", 1)
    code = model.encode(x)[0]
    rows = traversal(model, x, dims=[1], values=5)  # [5, 2]
    assert torch.allclose(rows[:, 0], code[0].expand(5)) and torch.all(rows[1:, 1] > rows[:-1, 1])
    grid = manifold(model, size=4).view(4, 4, 2)
    assert torch.all(grid[:, 1:, 0] > grid[:, :-1, 0]) and torch.all(grid[1:, :, 1] < grid[:-1, :, 1])
    median = torch.quantile(torch.randn(20_000), 0.5)
    assert float(grid[..., 0].mean()) == pytest.approx(float(median), abs=0.05)


def test_cli_train_sample_interpolate_end_to_end(tmp_path):
    out = tmp_path / "vae"
    settings = ["--set", "hidden=16", "--set", "latent=2", "--set", "eval_k=8"]
    result = runner.invoke(app, ["train", "vae", "--data", "digits", "--max-steps", "2", "--out", str(out), *settings])
    assert result.exit_code == 0, result.output
    for name in ["samples.png", "metrics.json", "reconstructions.png", "model.safetensors"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iwae_k"] == 8 and metrics["test_images"] == len(load_dataset("digits").test)
    assert metrics["elbo_nll_nats"] >= metrics["nll_nats"] > 0
    assert metrics["bits_per_dim"] == pytest.approx(metrics["nll_nats"] / (64 * math.log(2)))

    sampled = runner.invoke(
        app, ["sample", str(out), "--n", "4", "--pixels", "sampled", "--out", str(tmp_path / "s.png")]
    )
    assert sampled.exit_code == 0, sampled.output
    explored = runner.invoke(app, ["interpolate", str(out), "--out", str(tmp_path / "latent"), "--pairs", "2"])
    assert explored.exit_code == 0, explored.output
    for name in ["interpolation.png", "traversal.png", "reconstructions.png", "manifold.png"]:
        assert (tmp_path / "latent" / name).is_file(), name
    check_animation(tmp_path / "latent" / "interpolation", rows=2, steps=10)
    check_animation(tmp_path / "latent" / "traversal", rows=2, steps=10)  # one row per latent dimension


def check_animation(stem, rows, steps, side=8, scale=7, padding=2):
    """The GIF plays the grid's columns forth and back, its frame t holding column t of every row."""
    from PIL import Image, ImageSequence

    def cell(picture, row, column):
        top, left = (padding + row * (side + padding)) * scale, (padding + column * (side + padding)) * scale
        return np.asarray(picture.convert("L"))[top : top + side * scale, left : left + side * scale]

    png = Image.open(stem.with_suffix(".png"))
    frames = [frame.copy() for frame in ImageSequence.Iterator(Image.open(stem.with_suffix(".gif")))]
    assert len(frames) == 2 * steps - 2 and Image.open(stem.with_suffix(".gif")).info["loop"] == 0
    assert not np.array_equal(cell(png, 0, 0), cell(png, 0, steps - 1))  # the walk moves, so the order shows
    order = [*range(steps), *range(steps - 2, 0, -1)]
    columns = math.ceil(math.sqrt(rows))  # each frame is a square-ish grid of the rows' images
    for frame, step in zip(frames, order):
        for row in range(rows):
            assert np.array_equal(cell(frame, row // columns, row % columns), cell(png, row, step)), (step, row)


def test_interpolate_refuses_a_model_without_latents(tmp_path):
    out = tmp_path / "independent"
    trained = runner.invoke(app, ["train", "independent", "--data", "digits", "--max-steps", "1", "--out", str(out)])
    assert trained.exit_code == 0
    result = runner.invoke(app, ["interpolate", str(out)])
    assert result.exit_code != 0 and "is not a latent variable model" in str(result.exception)


@pytest.mark.slow
def test_a_trained_vae_beats_independent_pixels(tmp_path):
    common = {"data": "digits", "max_steps": 1500, "progress": False}
    vae = genzoo.train("vae", out=tmp_path / "vae", settings={"hidden": 64, "latent": 8, "eval_k": 200}, **common)
    independent = genzoo.train("independent", out=tmp_path / "independent", **common)
    assert vae.metrics["nll_nats"] < independent.metrics["nll_nats"] - 1  # measured: about 3 nats better
    assert vae.metrics["elbo_nll_nats"] > vae.metrics["nll_nats"]


@pytest.mark.parametrize("name", ["vae", "aae"])
def test_evaluation_scores_the_same_weights_the_same_and_leaves_the_callers_randomness(name):
    settings = {"parzen_samples": 200, "parzen_validation": 20} if name == "aae" else {"eval_k": 8}
    model = genzoo.create(name, (1, 8, 8), **settings).eval()
    x = (torch.rand(40, 1, 8, 8) > 0.5).float() if name == "vae" else torch.randint(0, 256, (40, 1, 8, 8)).float()
    torch.manual_seed(5)
    first = model.evaluate(x, None, 256 if name == "aae" else 2)
    after = torch.rand(3)
    torch.manual_seed(6)
    second = model.evaluate(x, None, 256 if name == "aae" else 2)
    assert first == second
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after)  # evaluate drew nothing from the caller's stream
