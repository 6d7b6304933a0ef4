"""PixelRNN family: causality by gradient, exact normalization, fast == naive sampling, completion, training, CLI."""

import itertools
import json

import pytest
import torch
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.data import load_dataset
from genzoo.data.transforms import prepare
from genzoo.errors import GenzooError
from genzoo.nn.pixelrnn import DiagonalBiLSTMLayer, skew, unskew

ARCHITECTURES = ["row_lstm", "diagonal_bilstm", "pixelcnn"]
TINY = {"layers": 2, "hidden": 6, "head": 9}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a busy 2-core machine thread synchronization costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name, shape, **settings):
    return genzoo.create(name, image_shape=shape, **{**TINY, **settings}).double()


def test_skew_places_row_i_at_offset_i_and_unskew_inverts_it():
    x = torch.randn(2, 3, 4, 6)
    skewed = skew(x)
    assert skewed.shape == (2, 3, 4, 9)
    for i, j in itertools.product(range(4), range(6)):
        assert torch.equal(skewed[..., i, i + j], x[..., i, j])
    assert skewed.count_nonzero() == x.count_nonzero()
    assert torch.equal(unskew(skewed), x)


def input_gradients(model, x, d):
    """Gradient of the parameters of conditional d w.r.t. every input dimension, in the model's ordering."""
    x = x.clone().requires_grad_(True)
    model.conditionals(x)[:, d].sum().backward()
    return x.grad.permute(0, 2, 3, 1).flatten(1).abs().sum(0)  # [D], d = (row * W + column) * C + colour


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize(("shape", "settings"), [((1, 3, 4), {}), ((3, 2, 3), {"output": "softmax", "levels": 4})])
def test_conditional_d_has_zero_gradient_wrt_inputs_at_or_after_d(name, shape, settings):
    model = tiny(name, shape, hidden=12, head=24, **settings)  # wide enough that no ReLU group is dead everywhere
    colors, height, width = shape
    x = torch.rand(4, *shape, dtype=torch.float64) * (settings.get("levels", 2) - 1)
    for d in range(colors * height * width):
        grad = input_gradients(model, x, d)
        assert grad[d:].eq(0).all(), f"{name}: conditional {d} sees its future"
        pixel, colour = divmod(d, colors)
        i, j = divmod(pixel, width)
        near = [pixel * colors + c for c in range(colour)]  # earlier colours of the same pixel
        near += [(i * width + j - 1) * colors + c for c in range(colors) if j > 0]  # left neighbour
        near += [((i - 1) * width + j) * colors + c for c in range(colors) if i > 0]  # upper neighbour
        assert grad[near].gt(0).all(), f"{name}: conditional {d} ignores its nearest context"
        if name == "diagonal_bilstm":  # the whole available context from one layer
            assert grad[:d].gt(0).all(), f"conditional {d} misses part of its context"


def test_row_lstm_context_is_a_triangle():
    model = tiny("row_lstm", (1, 4, 7), layers=1)
    x = torch.rand(1, 1, 4, 7, dtype=torch.float64)
    grad = input_gradients(model, x, 3 * 7 + 3).view(4, 7)  # pixel (3, 3)
    # the 7x7 input layer reaches 3 columns to each side; each Row LSTM step up one row widens it by one
    assert grad[2, 6] > 0 and grad[0, 0] > 0
    assert grad[3, 4:].eq(0).all()


def test_diagonal_bilstm_directions_see_only_the_past():
    """Left to right: (i, j) sees positions up to (i, j) (colour groups at (i, j) per mask B); the right-to-left
    map, shifted down, sees only rows above, including their right end."""
    colors, height, width = 3, 3, 4
    layer = DiagonalBiLSTMLayer(hidden=6, colors=colors).double()
    x = torch.randn(1, 12, height, width, dtype=torch.float64, requires_grad=True)
    feature_group = torch.arange(12) * colors // 12  # the colour group of each of the 2h input features
    hidden_group = torch.arange(6) * colors // 6
    for direction in (0, 1):
        for i, j, k in itertools.product(range(height), range(width), (0, 2, 5)):  # a unit of each colour
            x.grad = None
            layer.directions(x)[direction][0, k, i, j].backward()
            grad = x.grad[0].abs()  # [2h, H, W]
            after = torch.zeros(height, width, dtype=torch.bool)
            after.view(-1)[i * width + j + 1 :] = True
            assert grad[:, after].eq(0).all()
            if direction == 0:
                assert grad[feature_group > hidden_group[k], i, j].eq(0).all()
                assert grad[feature_group <= hidden_group[k], i, j].gt(0).all()
                if j > 0:
                    assert grad[:, i, j - 1].gt(0).all()
            else:
                assert grad[:, i].eq(0).all()
                if i > 0:
                    assert grad[:, i - 1, width - 1].gt(0).all() and grad[:, i - 1, j].gt(0).all()


def all_images(shape, levels):
    dims = shape[0] * shape[1] * shape[2]
    values = itertools.product(range(levels), repeat=dims)
    return torch.tensor(list(values), dtype=torch.float64).view(-1, *shape)


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize(
    ("shape", "settings"),
    [((1, 3, 3), {}), ((1, 2, 2), {"output": "softmax", "levels": 3}), ((3, 2, 2), {"output": "softmax", "levels": 2})],
)
def test_probabilities_of_all_images_sum_to_one(name, shape, settings):
    model = tiny(name, shape, **settings)
    images = all_images(shape, settings.get("levels", 2))
    with torch.no_grad():
        total = model.log_prob(images).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_softmax_output_reads_levels_and_bernoulli_reads_binary():
    assert genzoo.create("pixelcnn").input_kind == "binary"
    assert genzoo.create("pixelcnn", output="softmax").input_kind == "levels"
    with pytest.raises(GenzooError):
        genzoo.create("pixelcnn", output="gaussian")


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize(("shape", "settings"), [((1, 5, 6), {}), ((3, 3, 4), {"output": "softmax", "levels": 5})])
def test_fast_and_naive_sampling_agree_for_the_same_random_numbers(name, shape, settings):
    model = tiny(name, shape, **settings)
    torch.manual_seed(7)
    naive = model.sample(4, method="naive")
    torch.manual_seed(7)
    fast = model.sample(4, method="fast")
    assert torch.equal(naive, fast)
    assert naive.min() >= 0 and naive.max() <= settings.get("levels", 2) - 1
    assert len(naive.unique()) > 1


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_completion_keeps_the_given_pixels(name):
    model = tiny(name, (3, 4, 4), output="softmax", levels=4)
    given = torch.randint(0, 4, (3, 3, 4, 4)).double()
    known = torch.zeros(3, 3, 4, 4, dtype=torch.bool)
    known[:, :, :2] = True  # top half
    known[:, 0, 2, 1] = True  # one red value inside the unknown part
    partial = torch.where(known, given, torch.full_like(given, -1))
    for method in ("fast", "naive"):
        torch.manual_seed(1)
        completed = model.sample(3, conditioned_on=partial, method=method)
        assert torch.equal(completed[known], given[known].long())
        assert completed.min() >= 0
    torch.manual_seed(1)
    assert torch.equal(completed, model.sample(3, conditioned_on=partial, method="fast"))


def test_completion_follows_the_model_conditionals():
    """Sampling the last pixel given the rest matches its conditional probability (sampler vs density)."""
    model = tiny("diagonal_bilstm", (1, 2, 2))
    context = torch.tensor([[[[1.0, 0.0], [1.0, -1.0]]]], dtype=torch.float64)
    torch.manual_seed(0)
    draws = model.sample(4000, conditioned_on=context)[:, 0, 1, 1]
    with torch.no_grad():
        p = torch.sigmoid(model.conditionals(context.clamp(min=0))[0, 3]).item()
    assert draws.mean().item() == pytest.approx(p, abs=4 * (p * (1 - p) / 4000) ** 0.5 + 1e-3)


@pytest.mark.parametrize(
    ("name", "output"), [("row_lstm", "softmax"), ("diagonal_bilstm", "bernoulli"), ("pixelcnn", "softmax")]
)
def test_a_few_training_steps_lower_the_nll_on_real_digits(name, output):
    dataset = load_dataset("digits")
    model = genzoo.create(name, image_shape=dataset.image_shape, output=output, levels=dataset.levels, **TINY)
    x = prepare(dataset.train[:16], model.input_kind, dataset.levels, torch.Generator().manual_seed(0))
    optimizer = model.configure_optimizers()["model"]
    losses = []
    for _ in range(5):
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


def test_cli_trains_row_lstm_on_binarized_mnist_end_to_end(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    settings = ["--set", "layers=1", "--set", "hidden=4", "--set", "head=8"]
    args = ["train", "row_lstm", "--data", "binarized-mnist", "--max-steps", "2", "--batch-size", "8"]
    result = runner.invoke(app, [*args, "--out", str(out), *settings])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "samples.png").is_file()
    assert metrics["train_batches"] == 2 and metrics["test_images"] == 10_000
    assert 0 < metrics["nll_nats"] < 784 * 0.75  # 2 steps already beat a coin (543 nats)
    sampled = runner.invoke(app, ["sample", str(out), "--n", "4", "--method", "fast", "--out", str(tmp_path / "s.png")])
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "s.png").is_file()
