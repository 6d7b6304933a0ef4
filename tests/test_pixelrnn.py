"""PixelRNN family: causality by gradient, exact normalization, fast == naive sampling, completion, training, CLI."""

import contextlib
import itertools
import json
import types

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.data import load_dataset
from genzoo.data.transforms import prepare
from genzoo.errors import GenzooError
from genzoo.nn.pixelrnn import DiagonalBiLSTMLayer, RowLSTMLayer, lstm_update

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


# The layers' scans as they were first written: plain autograd through a Python loop over rows / skewed columns. The
# library's scans (autograd Functions with a hand-written backward) must compute the same values and gradients.


def skew(x):
    """[..., H, W] -> [..., H, W + H - 1] with ``out[..., i, i + j] = x[..., i, j]`` and zeros elsewhere."""
    height, width = x.shape[-2:]
    flat = F.pad(x, (0, height)).flatten(-2)
    return flat[..., : height * (width + height - 1)].unflatten(-1, (height, width + height - 1))


def unskew(x):
    height, skewed_width = x.shape[-2:]
    width = skewed_width - height + 1
    flat = F.pad(x.flatten(-2), (0, height))
    return flat.unflatten(-1, (height, width + height))[..., :width]


def reference_row_lstm(layer, x):
    batch, _, height, width = x.shape
    input_gates = layer.input_to_state(x).permute(2, 0, 3, 1)  # [H, B, W, 4h]
    hidden = x.new_zeros(batch, width, layer.hidden)
    cell = torch.zeros_like(hidden)
    rows = []
    for row_gates in input_gates.unbind(0):
        windows = F.pad(hidden, (0, 0, 1, 1)).unfold(1, 3, 1)  # [B, W, h, 3]
        hidden, cell = lstm_update(row_gates + layer.state_to_state(windows.flatten(2)), cell)
        rows.append(hidden)
    return x + layer.output(torch.stack(rows, 1).permute(0, 3, 1, 2))


def reference_diagonal_directions(layer, x):
    batch, _, height, width = x.shape
    input_gates = torch.stack([layer.left_to_right_input(x), layer.right_to_left_input(x).flip(-1)], 1)
    input_gates = skew(input_gates).permute(4, 1, 0, 3, 2)  # [W + H - 1, 2, B, H, 4h]
    hidden = cell = x.new_zeros(2, batch, 1, layer.hidden)
    previous_first, columns = 0, []
    for column, column_gates in enumerate(input_gates.unbind(0)):
        first, last = max(0, column - width + 1), min(column, height - 1)
        offset, rows = first - previous_first + 1, last - first + 1
        hidden_padded, cell_padded = F.pad(hidden, (0, 0, 1, 1)), F.pad(cell, (0, 0, 1, 1))
        above = hidden_padded[:, :, offset - 1 : offset - 1 + rows]
        beside = hidden_padded[:, :, offset : offset + rows]
        neighbours = torch.cat([above, beside], -1).view(2, batch * rows, -1)
        state_gates = torch.bmm(neighbours, layer.state_to_state).view(2, batch, rows, -1)
        gates = column_gates[:, :, first : last + 1] + state_gates
        hidden, cell = lstm_update(gates, cell_padded[:, :, offset : offset + rows])
        columns.append(F.pad(hidden, (0, 0, first, height - 1 - last)))
        previous_first = first
    both = unskew(torch.stack(columns, -1).permute(1, 0, 3, 2, 4))  # [B, 2, h, H, W]
    return both[:, 0], F.pad(both[:, 1].flip(-1), (0, 0, 1, 0))[:, :, :height]


def reference_diagonal_bilstm(layer, x):
    left_to_right, right_to_left = reference_diagonal_directions(layer, x)
    return x + layer.output(left_to_right + right_to_left)


@contextlib.contextmanager
def reference_layers(model):
    """Run ``model``'s Row LSTM / Diagonal BiLSTM layers through the reference scans."""
    for layer in model.layers:
        reference = reference_row_lstm if isinstance(layer, RowLSTMLayer) else reference_diagonal_bilstm
        layer.forward = types.MethodType(reference, layer)
    try:
        yield model
    finally:
        for layer in model.layers:
            del layer.forward


def outputs_and_gradients(layer, run, x):
    x = x.clone().requires_grad_(True)
    outputs = run(x)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs]
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    gradients = torch.autograd.grad(loss, [x, *layer.parameters()], allow_unused=True)
    return [o.detach() for o in outputs], gradients


@pytest.mark.parametrize(
    ("colors", "height", "width", "batch"), [(1, 3, 4, 2), (3, 5, 4, 3), (1, 7, 2, 1), (3, 2, 6, 2)]
)
def test_row_lstm_and_diagonal_bilstm_scans_match_the_autograd_reference(colors, height, width, batch):
    torch.manual_seed(colors * 100 + height * 10 + width)
    x = torch.randn(batch, 12, height, width, dtype=torch.float64)
    row = RowLSTMLayer(6, colors).double()
    diagonal = DiagonalBiLSTMLayer(6, colors).double()
    cases = [
        (row, row, lambda v: reference_row_lstm(row, v)),
        (diagonal, diagonal.directions, lambda v: reference_diagonal_directions(diagonal, v)),
        (diagonal, diagonal, lambda v: reference_diagonal_bilstm(diagonal, v)),
    ]
    for layer, run, reference in cases:
        outputs, gradients = outputs_and_gradients(layer, run, x)
        expected_outputs, expected_gradients = outputs_and_gradients(layer, reference, x)
        for output, expected in zip(outputs, expected_outputs, strict=True):
            torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
        for gradient, expected in zip(gradients, expected_gradients, strict=True):
            assert (gradient is None) == (expected is None)
            if gradient is not None:
                torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["row_lstm", "diagonal_bilstm"])
def test_log_prob_and_its_gradient_match_the_reference_in_float32_at_the_default_size(name):
    torch.manual_seed(3)
    model = genzoo.create(name, image_shape=(1, 28, 28))
    for layer in model.layers:  # away from the initialization's symmetric gates
        torch.nn.init.normal_(layer.state_to_state.weight if name == "row_lstm" else layer.state_to_state, std=0.3)
    x = (torch.rand(3, 1, 28, 28) < 0.4).float()

    def value_and_gradients():
        model.zero_grad()
        log_prob = model.log_prob(x)
        log_prob.sum().backward()
        return log_prob.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    log_prob, gradients = value_and_gradients()
    with reference_layers(model):
        expected, expected_gradients = value_and_gradients()
    torch.testing.assert_close(log_prob, expected, rtol=1e-5, atol=0)
    for parameter, gradient in gradients.items():
        scale = expected_gradients[parameter].abs().max()
        torch.testing.assert_close(gradient, expected_gradients[parameter], rtol=0, atol=1e-4 * scale + 1e-7)


@pytest.mark.parametrize("name", ["row_lstm", "diagonal_bilstm"])
def test_bf16_autocast_keeps_the_scan_in_float32_and_trains(name):
    torch.manual_seed(0)
    model = genzoo.create(name, image_shape=(1, 6, 5), **TINY)
    x = (torch.rand(4, 1, 6, 5) < 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_prob = model.log_prob(x)
    log_prob.sum().backward()
    assert log_prob.dtype == torch.float32
    assert all(p.grad is not None and p.grad.isfinite().all() and p.grad.abs().sum() > 0 for p in model.parameters())
    with torch.no_grad():
        assert torch.allclose(log_prob, model.log_prob(x), rtol=0.05)


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
