"""Exactness of the part-1 models: normalization by enumeration, causality by gradient, samplers vs densities."""

import itertools
import math

import pytest
import torch

import genzoo
from genzoo.models import structured as s
from genzoo.models.base import DirectStep

BINARY_MODELS = [
    ("independent", {}),
    ("markov", {"order": 1}),
    ("markov", {"order": 3}),
    ("fvsbn", {}),
    ("nade", {"hidden": 7}),
]
SHAPE = (1, 2, 5)  # D = 10 binary pixels: 1,024 configurations


def randomized(name, settings, shape=SHAPE):
    """A model with random (not initial) parameters, in float64, so the checks see a generic instance."""
    model = genzoo.create(name, shape, **settings).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def all_configurations(dims):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=dims)), dtype=torch.float64)


def test_parameter_counts_match_the_formulas():
    assert s.full_joint_parameters(10) == 1023
    assert s.independent_parameters(784) == 784
    # order k: pixel i has 2^min(i,k) contexts; k = 0 is independence, k >= n - 1 is the full joint table
    assert s.markov_parameters(10, 0) == 10
    assert s.markov_parameters(10, 9) == s.full_joint_parameters(10)
    assert s.fvsbn_parameters(4) == 1 + 2 + 3 + 4
    nade = genzoo.create("nade", (1, 28, 28), hidden=500)
    assert sum(p.numel() for p in nade.parameters()) == s.nade_parameters(784, 500)
    fvsbn = genzoo.create("fvsbn", (1, 4, 4))
    assert int(fvsbn.mask.sum()) + fvsbn.bias.numel() == s.fvsbn_parameters(16)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_uses_exactly_the_counted_table_entries(order):
    model = randomized("markov", {"order": order})
    x = all_configurations(10)
    model.log_prob(x).sum().backward()
    assert int((model.table.grad != 0).sum()) == s.markov_parameters(10, order)


@pytest.mark.parametrize(("name", "settings"), BINARY_MODELS)
def test_probabilities_sum_to_one_over_all_configurations(name, settings):
    model = randomized(name, settings)
    x = all_configurations(10).view(-1, *SHAPE)
    total = model.log_prob(x).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize(("name", "settings"), [("fvsbn", {}), ("nade", {"hidden": 7})])
def test_conditional_d_never_sees_inputs_at_or_after_d(name, settings):
    model = randomized(name, settings)
    x = torch.bernoulli(torch.full((3, 10), 0.5, dtype=torch.float64)).requires_grad_()
    logits = model.conditionals(x)
    for d in range(10):
        (grad,) = torch.autograd.grad(logits[:, d].sum(), x, retain_graph=True)
        assert torch.all(grad[:, d:] == 0), f"logit {d} depends on inputs >= {d}"
        if d > 0:
            assert grad[:, d - 1].abs().sum() > 0, f"logit {d} ignores its predecessor"


@pytest.mark.parametrize(
    ("name", "settings", "method"),
    [*[(n, st, "conditionals") for n, st in BINARY_MODELS[1:]], ("nade", {"hidden": 7}, "_conditionals_of_binary")],
)
def test_flipping_inputs_at_or_after_d_leaves_conditional_d_unchanged(name, settings, method):
    """The discrete counterpart of the gradient test: it also covers table lookups and NADE's sparse path."""
    model = randomized(name, settings)
    logits_of = getattr(model, method)
    x = torch.bernoulli(torch.full((4, 10), 0.5, dtype=torch.float64))
    base = logits_of(x)
    for j in range(10):
        flipped = x.clone()
        flipped[:, j] = 1 - flipped[:, j]
        changed = (logits_of(flipped) - base).abs().amax(0)  # [D]
        assert torch.all(changed[: j + 1] == 0), f"a conditional d <= {j} changed when x_{j} flipped"
        if j < 9:
            assert changed[j + 1] > 0, f"conditional {j + 1} ignores x_{j}"


def test_nade_fast_density_equals_the_dense_recurrence():
    model = randomized("nade", {"hidden": 7})
    x = all_configurations(10)
    dense = s.bernoulli_log_prob(x, model.conditionals(x))
    torch.testing.assert_close(model.log_prob(x), dense, rtol=0, atol=1e-10)
    # gradients of the custom sparse path agree with autograd through the dense one
    fast_grads = torch.autograd.grad(model.log_prob(x).sum(), list(model.parameters()))
    dense_grads = torch.autograd.grad(s.bernoulli_log_prob(x, model.conditionals(x)).sum(), list(model.parameters()))
    for fast, dense in zip(fast_grads, dense_grads):
        torch.testing.assert_close(fast, dense, rtol=1e-9, atol=1e-9)


def test_nade_fast_density_on_real_sized_images():
    model = genzoo.create("nade", (1, 28, 28), hidden=50)
    x = torch.bernoulli(torch.full((20, 784), 0.13))
    torch.testing.assert_close(model.log_prob(x), s.bernoulli_log_prob(x, model.conditionals(x)), atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize(("name", "settings"), BINARY_MODELS)
def test_sample_frequencies_match_the_model_probabilities(name, settings):
    shape = (1, 2, 2)
    model = randomized(name, settings, shape).float()
    configurations = all_configurations(4).float()
    probs = model.log_prob(configurations.view(-1, *shape)).exp().double()
    torch.manual_seed(1)
    samples = model.sample(40_000).view(-1, 4)
    codes = (samples * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    freq = torch.bincount(codes, minlength=16).double() / len(codes)
    # chi-square goodness of fit, 15 degrees of freedom: P(chi2 > 37.7) = 0.001
    chi2 = (40_000 * (freq - probs) ** 2 / probs).sum()
    assert chi2 < 37.7


def test_rnade_density_integrates_to_one_in_one_and_two_dimensions():
    for shape in [(1, 1, 1), (1, 1, 2)]:
        model = genzoo.create("rnade", shape, hidden=5, components=3).double()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        grid = torch.linspace(-4, 5, 1501, dtype=torch.float64)
        step = (grid[1] - grid[0]).item()
        if shape[-1] == 1:
            total = model.log_prob(grid.view(-1, 1, 1, 1)).exp().sum() * step
        else:
            a, b = torch.meshgrid(grid, grid, indexing="ij")
            points = torch.stack([a.flatten(), b.flatten()], 1).view(-1, 1, 1, 2)
            total = torch.cat([model.log_prob(chunk).exp() for chunk in points.split(200_000)]).sum() * step**2
        assert total.item() == pytest.approx(1.0, abs=2e-3)


def test_rnade_conditionals_are_causal_and_samples_match_the_density():
    model = genzoo.create("rnade", (1, 1, 6), hidden=5, components=3).double()
    x = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    params = model.conditionals(x)  # [B, D, 3K]
    for d in range(6):
        (grad,) = torch.autograd.grad(params[:, d].sum(), x, retain_graph=True)
        assert torch.all(grad[:, d:] == 0)
    one_d = genzoo.create("rnade", (1, 1, 1), hidden=5, components=3)
    grid = torch.linspace(-3, 4, 4001).view(-1, 1, 1, 1)
    density = one_d.log_prob(grid).exp()
    step = (grid[1] - grid[0]).item()
    mean = (grid.flatten() * density).sum() * step
    second = (grid.flatten() ** 2 * density).sum() * step
    samples = one_d.sample(50_000).flatten()
    sd = math.sqrt(second - mean**2)
    assert abs(samples.mean() - mean) < 4 * sd / math.sqrt(50_000)
    assert samples.var().item() == pytest.approx((second - mean**2).item(), rel=0.05)


@pytest.mark.parametrize("name", ["independent", "markov", "fvsbn", "nade", "rnade"])
def test_one_training_step_lowers_the_loss_on_its_batch(name):
    from genzoo.data.transforms import prepare

    model = genzoo.create(name, (1, 8, 8))
    images = (torch.rand(32, 1, 8, 8) * 255).to(torch.uint8)
    x = prepare(images, model.input_kind, 256, torch.Generator().manual_seed(0))
    before = -model.log_prob(x).mean().item()
    logs = model.training_step({"x": x}, DirectStep(model))
    after = -model.log_prob(x).mean().item()
    assert logs["nll"].item() == pytest.approx(before, rel=1e-5)
    assert after < before
