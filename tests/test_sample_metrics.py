"""The sample-quality suite: Fréchet distance in closed form, KID unbiasedness, precision/recall under dropped
modes, the Inception-Score analogue's extremes, Hungarian code accuracy, the shipped feature nets and standard
FID through a user-supplied TorchScript network."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from genzoo.metrics.features import FeatureNet, accuracy, load_feature_net, save_feature_net, weights_dir
from genzoo.metrics.sample_quality import (
    code_accuracy,
    frechet_distance,
    frechet_distance_of_features,
    inception_score,
    kernel_inception_distance,
    precision_recall,
    sample_quality,
    standard_fid,
)


def random_covariance(dims, generator):
    root = torch.randn(dims, dims, generator=generator, dtype=torch.float64)
    return root @ root.T / dims + 0.1 * torch.eye(dims, dtype=torch.float64)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(3000, 32).exp()  # far from Gaussian: only the fitted moments matter
    assert frechet_distance_of_features(features, features) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_between_gaussians():
    g = torch.Generator().manual_seed(1)
    dims = 6
    mean_a, mean_b = torch.randn(dims, generator=g).double(), torch.randn(dims, generator=g).double()
    cov_a, cov_b = random_covariance(dims, g), random_covariance(dims, g)  # do not commute
    # independent reference: scipy's general matrix square root of A B
    root = scipy.linalg.sqrtm(cov_a.numpy() @ cov_b.numpy()).real
    expected = float(((mean_a - mean_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * np.trace(root))
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-8)
    # commuting (diagonal) covariances: sum_i (sqrt(a_i) - sqrt(b_i))^2 plus the squared mean gap
    a, b = torch.tensor([1.0, 4.0, 9.0]).double(), torch.tensor([4.0, 1.0, 9.0]).double()
    mean = torch.zeros(3).double()
    assert frechet_distance(mean, a.diag(), mean + 1, b.diag()) == pytest.approx(3 + 1 + 1 + 0)


def test_frechet_distance_from_samples_approaches_the_gaussian_value():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(100_000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(100_000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) + 1.0
    assert frechet_distance_of_features(x, y) == pytest.approx(2 + (2 - 1) ** 2, rel=0.02)


def test_kid_is_unbiased_on_equal_distributions_and_positive_otherwise():
    g = torch.Generator().manual_seed(3)
    estimates = [
        kernel_inception_distance(torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g), subsets=1)[0]
        for _ in range(400)
    ]
    mean, standard_error = np.mean(estimates), np.std(estimates) / np.sqrt(len(estimates))
    assert abs(mean) < 3 * standard_error
    # the biased (V-statistic) estimate of the same quantity sits well above zero
    x, y = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g)
    kernel = lambda a, b: (a @ b.T / 8 + 1) ** 3  # noqa: E731
    biased = float(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())
    assert biased > 10 * standard_error
    shifted = kernel_inception_distance(torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g) + 1, 5)
    assert shifted[0] > 0.1


def gaussian_modes(modes, per_mode, generator):
    centres = torch.zeros(10, 4, dtype=torch.float64)
    centres[:, 0] = 10 * torch.arange(10)  # 10 well separated modes on a line
    return torch.cat([centres[m] + torch.randn(per_mode, 4, generator=generator) for m in modes])


def test_precision_recall_are_one_on_identical_sets_and_recall_falls_with_dropped_modes():
    g = torch.Generator().manual_seed(4)
    real = gaussian_modes(range(10), 200, g)
    assert precision_recall(real, real) == (1.0, 1.0)
    fresh_precision, fresh_recall = precision_recall(real, gaussian_modes(range(10), 200, g))
    assert fresh_precision > 0.9 and fresh_recall > 0.9
    half_precision, half_recall = precision_recall(real, gaussian_modes(range(5), 400, g))  # five modes dropped
    assert half_precision > fresh_precision - 0.05
    assert half_recall == pytest.approx(fresh_recall / 2, abs=0.05)
    assert precision_recall(real, gaussian_modes(range(5), 400, g) + 100.0)[0] == 0.0


def test_inception_score_extremes():
    k = 10
    confident_and_diverse = torch.eye(k).repeat(50, 1)
    assert inception_score(confident_and_diverse, splits=1)[0] == pytest.approx(k)
    one_class = torch.zeros(500, k)
    one_class[:, 3] = 1
    assert inception_score(one_class)[0] == pytest.approx(1.0)
    assert inception_score(torch.full((500, k), 1.0 / k))[0] == pytest.approx(1.0)
    sorted_by_class = torch.eye(k).repeat_interleave(200, 0)  # splits must not follow the order of the set
    assert inception_score(sorted_by_class, splits=5)[0] == pytest.approx(k, rel=0.05)


def test_code_accuracy_finds_the_best_one_to_one_matching():
    labels = torch.arange(10).repeat(20)
    permutation = torch.randperm(10)
    assert code_accuracy(permutation[labels], labels) == 1.0
    codes = permutation[labels].clone()
    codes[:20] = permutation[(labels[:20] + 1) % 10]  # 20 of 200 mislabelled
    assert code_accuracy(codes, labels) == pytest.approx(0.9)
    # two codes merged into one label: a one-to-one matching can credit only one of them
    assert code_accuracy(labels // 2 * 2, labels) == pytest.approx(0.5)


@pytest.mark.parametrize("data, minimum", [("mnist", 0.97), ("fashion-mnist", 0.88)])
def test_shipped_feature_nets_reach_their_recorded_test_accuracy(data, minimum, dataset_or_skip):
    net = load_feature_net(data)
    dataset = dataset_or_skip(data)
    measured = accuracy(net.net, dataset.test.float() / 255, dataset.test_labels)
    assert measured == pytest.approx(net.card["test_accuracy"], abs=1e-9)
    assert measured >= minimum
    assert net.card["test_images"] == len(dataset.test) and net.card["data_source"] == dataset.source


def test_sample_quality_separates_real_from_other_images_and_states_its_counts():
    from genzoo.data import load_dataset

    digits = load_dataset("mnist").test.float() / 255  # sorted by class
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    half, rest = digits[order[:500]], digits[order[500:]]
    # the same digits with their pixels scrambled: the ink statistics of digits, none of their shapes (no data
    # beyond the embedded digits needed)
    scrambled = rest[:500].flatten(1)[:, torch.randperm(784, generator=torch.Generator().manual_seed(1))]
    same = sample_quality(rest, half, "mnist")
    other = sample_quality(scrambled.view(-1, 1, 28, 28), half, "mnist")
    assert same["feature_net"] == "genzoo-features/mnist"
    assert (same["real_samples"], same["generated_samples"]) == (500, len(digits) - 500)
    assert other["frechet_distance"] > 10 * same["frechet_distance"]
    assert other["kid"] > 10 * abs(same["kid"])
    assert same["precision"] > 0.7 and same["recall"] > 0.7 and other["precision"] < 0.5
    assert same["inception_score_analogue"] > 7


def test_standard_fid_uses_the_supplied_torchscript_network(tmp_path):
    class PoolFeatures(torch.nn.Module):
        """Stands in for Inception: the same calling convention, 48-d features."""

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert x.shape[1:] == (3, 299, 299) and return_features
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    path = tmp_path / "inception.pt"
    torch.jit.script(PoolFeatures()).save(str(path))
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(40, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g) ** 2
    assert standard_fid(a, a, path)["fid"] == pytest.approx(0.0, abs=1e-6)
    resized = lambda x: torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1) * 255, size=(299, 299), mode="bilinear")  # noqa: E731
    expected = frechet_distance_of_features(
        torch.nn.functional.adaptive_avg_pool2d(resized(a), 4).flatten(1),
        torch.nn.functional.adaptive_avg_pool2d(resized(b), 4).flatten(1),
    )
    assert standard_fid(b, a, path)["fid"] == pytest.approx(expected, rel=1e-6)


def test_feature_net_round_trips_through_its_files(tmp_path):
    net = FeatureNet()
    card = {"data": "toy", "channels": 1, "classes": 10, "test_accuracy": 0.5}
    save_feature_net(net, card, tmp_path)
    loaded = load_feature_net("toy", tmp_path)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded.net(x), net.eval()(x))
    assert json.loads((tmp_path / "toy.json").read_text())["test_accuracy"] == 0.5
    assert (weights_dir() / "mnist.safetensors").stat().st_size < 3_000_000  # small enough to ship


def test_user_trained_feature_nets_live_in_the_cache_and_never_shadow_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE_DIR", str(tmp_path))
    card = {"data": "toy-user", "channels": 1, "classes": 10, "test_accuracy": 0.5}
    path = save_feature_net(FeatureNet(), card)  # the default place: the cache, not the installed package
    assert path.parent == tmp_path / "features" and not (weights_dir() / path.name).exists()
    loaded = load_feature_net("toy-user")  # found without naming the folder, and named by its path in reports
    assert str(path) in loaded.name
    save_feature_net(FeatureNet(), {**card, "data": "mnist"})  # a hand-trained mnist net in the cache ...
    shipped = load_feature_net("mnist")  # ... does not replace the shipped one
    assert shipped.name == "genzoo-features/mnist" and shipped.card["test_accuracy"] > 0.9


@pytest.mark.slow
def test_train_features_command_writes_weights_and_card(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import app

    result = CliRunner().invoke(
        app, ["metrics", "train-features", "--data", "digits", "--epochs", "15", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "digits.json").read_text())
    loaded = load_feature_net("digits", tmp_path)
    from genzoo.data import load_dataset

    dataset = load_dataset("digits")
    measured = accuracy(loaded.net, dataset.test.float() / (dataset.levels - 1), dataset.test_labels)
    assert measured == pytest.approx(card["test_accuracy"]) and measured > 0.5  # learned, and the card is true
