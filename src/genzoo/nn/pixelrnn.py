"""The residual layers of PixelRNN (van den Oord et al., ICML 2016): Row LSTM, Diagonal BiLSTM, PixelCNN block.

Every layer maps a feature map of 2h channels to 2h channels and adds its input (the paper's residual connections,
figure 5): the LSTM layers compute h features per gate from the input, run the recurrence, and a masked 1x1
convolution brings the h hidden features back to 2h. LSTM gates follow eq. (3):

    [o, f, i, g] = [sigmoid, sigmoid, sigmoid, tanh](K_ss (*) h_prev + K_is (*) x),
    c = f * c_prev + i * g,   h = o * tanh(c).

- Row LSTM: K_is is a k=3 masked convolution along the row (sees the left pixel and, per colour mask B, the pixel
  itself); K_ss a k=3 convolution over the previous row's hidden state. Rows are processed one after the other,
  each row in parallel, so the receptive field is a triangle above the pixel.
- Diagonal BiLSTM: the input is skewed (row i shifted right by i) so that the left neighbour (i, j-1) and the
  upper neighbour (i-1, j) of a pixel sit in the previous column; K_is is a masked 1x1 convolution and K_ss a
  2x1 convolution over the previous column, scanned column by column (one diagonal of the image per step; the
  skew is done with index maps, :func:`diagonal_geometry`, rather than a skewed copy of the map). The
  right-to-left direction runs on the mirrored image and its output is shifted down one row before the two are
  added, so no pixel sees its own row to the right. (Its input-to-state is therefore left unmasked: mask B there
  would only hide colours of pixels that are entirely in the past.) States outside the image are kept at zero,
  which is what the one-position update used for sampling assumes.

Each layer also evaluates one position at a time, carrying its state (``begin``, ``begin_row``, ``step``,
``end_row``), which is what makes sampling fast: the Row LSTM keeps the previous row's states, the Diagonal
BiLSTM keeps the left-to-right states and sweeps right to left once per finished row, the PixelCNN block keeps a
buffer of its 3x3 convolution's input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx

from genzoo.nn.masked import MaskedConv2d, channel_groups


def lstm_update(gates: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """Gates [..., 4h] ordered (o, f, i, g) and the previous cell [..., h] -> new hidden and cell states."""
    hidden = gates.shape[-1] // 4
    output_gate, forget_gate, input_gate = torch.sigmoid(gates[..., : 3 * hidden]).chunk(3, -1)
    cell = forget_gate * cell + input_gate * torch.tanh(gates[..., 3 * hidden :])
    return output_gate * torch.tanh(cell), cell


def gate_groups(hidden: int, colors: int) -> Tensor:
    """Colour groups of the 4h gate channels: each gate's h features split like the hidden state."""
    return channel_groups(hidden, colors).repeat(4)


def forget_bias_one(conv: nn.Conv2d, hidden: int) -> None:
    """Start the forget gate open (bias 1), the usual LSTM initialization."""
    with torch.no_grad():
        conv.bias.zero_()
        conv.bias[hidden : 2 * hidden] = 1.0


def batch_last(x: Tensor) -> Tensor:
    """A [B, C, H, W] map as a contiguous [C, H, W, B] tensor (a view when its memory is already in that order).

    From batch-first memory this is one 2D transpose [B, CHW] -> [CHW, B], which torch copies blockwise, several times
    faster than its general permuting copy (so is the way back, in the backward pass and in :func:`batch_first`)."""
    permuted = x.permute(1, 2, 3, 0)
    if permuted.is_contiguous():
        return permuted
    return x.reshape(len(x), -1).T.contiguous().view(permuted.shape)


def batch_first(x: Tensor) -> Tensor:
    """A [B, C, H, W] map in contiguous memory, by one 2D transpose from batch-last memory (see :func:`batch_last`)."""
    if x.is_contiguous() or not x.permute(1, 2, 3, 0).is_contiguous():
        return x.contiguous()
    return x.permute(1, 2, 3, 0).reshape(-1, len(x)).T.contiguous().view(x.shape)


# Training scans. Autograd through the per-step Python loop records a dozen small ops per row or diagonal (slices,
# chunks, concatenations, the zero-filled gradients of slices) and was the bulk of a training step. Both scans are
# therefore autograd Functions with a hand-written backward: the forward writes gates, cells and hidden states into
# preallocated buffers, and the backward walks the steps in reverse over the same buffers. The buffers are
# feature-major ([features, positions]): a step's gates, cells and states are then blocks whose rows run over all
# its positions, so the sigmoid and tanh see long contiguous runs (on 16-feature runs, as in [positions, 4h], they
# were several times slower), and every product is a matrix multiply-add on such blocks. They compute eq. (3)
# exactly as ``lstm_update`` does (the tests compare values and gradients with a plain autograd version).


def _lstm_cell_forward(gates: Tensor, cell_previous: Tensor, cell: Tensor, tanh_cell: Tensor, hidden: Tensor) -> None:
    """Eq. (3) in place on feature-major blocks: activates ``gates`` [..., 4h, n] (o, f, i, g along dim -2) and
    writes ``cell``, tanh(cell) and ``hidden`` [..., h, n]."""
    h = gates.shape[-2] // 4
    output_gate, forget_gate, input_gate, candidate = gates.split(h, -2)
    gates.narrow(-2, 0, 3 * h).sigmoid_()
    candidate.tanh_()
    torch.mul(forget_gate, cell_previous, out=cell)
    cell.addcmul_(input_gate, candidate)
    torch.tanh(cell, out=tanh_cell)
    torch.mul(output_gate, tanh_cell, out=hidden)


def _lstm_cell_backward(
    d_hidden: Tensor,
    d_cell: Tensor,
    gates: Tensor,
    tanh_cell: Tensor,
    cell_previous: Tensor,
    d_gates: Tensor,
    d_cell_previous: Tensor,
) -> None:
    """Gradients of :func:`_lstm_cell_forward` (``gates`` activated) given those of the hidden state and of the cell
    from later steps: writes d(pre-activation gates) into ``d_gates`` and d(cell_previous) into ``d_cell_previous``."""
    h = gates.shape[-2] // 4
    output_gate, forget_gate, input_gate, candidate = gates.split(h, -2)
    d_output, d_forget, d_input, d_candidate = d_gates.split(h, -2)
    torch.mul(d_hidden, tanh_cell, out=d_output)
    d_cell_total = torch.ops.aten.tanh_backward(d_hidden * output_gate, tanh_cell).add_(d_cell)
    torch.mul(d_cell_total, cell_previous, out=d_forget)
    torch.mul(d_cell_total, candidate, out=d_input)
    torch.mul(d_cell_total, input_gate, out=d_candidate)
    sigmoid_part = d_gates.narrow(-2, 0, 3 * h)
    torch.ops.aten.sigmoid_backward.grad_input(sigmoid_part, gates.narrow(-2, 0, 3 * h), grad_input=sigmoid_part)
    torch.ops.aten.tanh_backward.grad_input(d_candidate, candidate, grad_input=d_candidate)
    torch.mul(d_cell_total, forget_gate, out=d_cell_previous)


def _outside_autocast(method: Callable[..., Any]) -> Callable[..., Any]:
    """A scan's forward or backward with autocast off and every tensor in the dtype of the last one (the K_ss weight,
    or a gradient): the states are carried over many steps, and the in-place updates need one dtype."""

    @functools.wraps(method)
    def wrapped(ctx: FunctionCtx, *tensors: Tensor) -> Any:
        with torch.autocast(tensors[0].device.type, enabled=False):
            return method(ctx, *(t.to(tensors[-1].dtype) for t in tensors))

    return wrapped


class RowScan(torch.autograd.Function):
    """One Row LSTM layer's input-to-state products and recurrence over the rows.

    ``x`` [2h, H, B, W]: the layer's input; ``own``, ``left`` [4h, 2h] and ``bias`` [4h]: K_is's taps at the position
    and at its left neighbour (the right tap is masked to zero); ``weight`` [4h, 3h]: K_ss as ``nn.Linear`` stores it
    (input feature = channel * 3 + tap; taps left, centre, right). Returns the hidden states [h, H, B, W].

    Inputs, gates and states carry a zero column on either side of each image row ([features, H, B (W + 2)]): along
    a row of positions, a position's left neighbour is then the previous column and the tap t of its K_ss window
    the state column p - 1 + t, so all products are multiply-adds on column-shifted blocks. The padding columns are
    computed along and their states reset to zero.
    """

    @staticmethod
    @_outside_autocast
    def forward(ctx: FunctionCtx, x: Tensor, own: Tensor, left: Tensor, bias: Tensor, weight: Tensor) -> Tensor:
        _, height, batch, width = x.shape
        h = own.shape[0] // 4
        padded = batch * (width + 2)  # columns of one row
        taps = weight.view(4 * h, h, 3).permute(2, 0, 1).contiguous()  # [3, 4h, h]
        inputs = F.pad(x, (1, 1)).view(-1, height, padded)
        gates = x.new_empty(4 * h, height, padded)
        # Row 0 holds the zero state above the image; every other row is written before it is read.
        hidden, cell = x.new_empty(h, height + 1, padded), x.new_empty(h, height + 1, padded)
        hidden[:, 0], cell[:, 0] = 0, 0
        tanh_cell = x.new_empty(h, height, padded)
        for row in range(height):
            # a row's products are computed right before its activations, which then read them from cache
            torch.addmm(bias[:, None], own, inputs[:, row], out=gates[:, row])
            gates[:, row, 1:].addmm_(left, inputs[:, row, :-1])
            for tap in range(3):
                gates[:, row, 1:-1].addmm_(taps[tap], hidden[:, row, tap : tap + padded - 2])
            _lstm_cell_forward(gates[:, row], cell[:, row], cell[:, row + 1], tanh_cell[:, row], hidden[:, row + 1])
            hidden[:, row + 1].view(h, batch, width + 2)[:, :, :: width + 1] = 0
        ctx.save_for_backward(inputs, gates, cell, tanh_cell, hidden, own, left, taps)
        return hidden[:, 1:].view(h, height, batch, width + 2)[..., 1:-1].clone()

    @staticmethod
    @_outside_autocast
    def backward(ctx: FunctionCtx, d_output: Tensor) -> tuple[Tensor, ...]:
        inputs, gates, cell, tanh_cell, hidden, own, left, taps = ctx.saved_tensors
        h, height, batch, width = d_output.shape
        padded = batch * (width + 2)
        d_gates = torch.empty_like(gates)
        d_hidden, d_cell = torch.empty_like(hidden), torch.empty_like(cell)
        d_hidden[:, 1:].view(h, height, batch, width + 2)[..., 1:-1] = d_output
        d_cell[:, height] = 0  # nothing reads the last row's cells
        taps_t = taps.transpose(1, 2).contiguous()
        own_t, left_t = own.T.contiguous(), left.T.contiguous()
        d_inputs = torch.empty_like(inputs)
        for row in reversed(range(height)):
            # The padding columns' hidden states are reset to zero: no gradient flows through them (whatever their
            # slots collected), and so their gates' gradients (summed over below) are zero.
            d_hidden[:, row + 1].view(h, batch, width + 2)[:, :, :: width + 1] = 0
            _lstm_cell_backward(
                d_hidden[:, row + 1],
                d_cell[:, row + 1],
                gates[:, row],
                tanh_cell[:, row],
                cell[:, row],
                d_gates[:, row],
                d_cell[:, row],
            )
            torch.mm(own_t, d_gates[:, row], out=d_inputs[:, row])
            d_inputs[:, row, :-1].addmm_(left_t, d_gates[:, row, 1:])
            if row > 0:
                for tap in range(3):
                    d_hidden[:, row, tap : tap + padded - 2].addmm_(taps_t[tap], d_gates[:, row, 1:-1])
        d_gates, inputs = d_gates.view(4 * h, -1), inputs.view(-1, height * padded)
        all_above = hidden[:, :height].reshape(h, -1)
        columns = d_gates.shape[1]
        d_taps = torch.stack([d_gates[:, 1:-1] @ all_above[:, tap : tap + columns - 2].T for tap in range(3)], 1)
        return (
            d_inputs.view(-1, height, batch, width + 2)[..., 1:-1],
            d_gates @ inputs.T,
            d_gates[:, 1:] @ inputs[:, :-1].T,
            d_gates.sum(1),
            d_taps.transpose(1, 2).reshape(4 * h, 3 * h),  # (tap, channel) -> K_ss's channel * 3 + tap
        )


class DiagonalGeometry(NamedTuple):
    """Index maps of the Diagonal BiLSTM scan for one image size (see :func:`diagonal_geometry`)."""

    diagonals: list[tuple[int, int, int]]  # per diagonal: first row, rows, first cell
    positions: Tensor  # [2, cells]: per direction, the image position i W + j of each cell
    upper: Tensor  # [cells]: the slot of each cell's upper neighbour
    left: Tensor  # [cells]: the slot of each cell's left neighbour
    left_to_right: Tensor  # [H W]: per position, the slot of its cell (its left-to-right state)
    right_to_left_above: Tensor  # [H W]: per position, the slot of the right-to-left state above it (0 on row 0)
    outside: Tensor  # slots read as neighbours that hold no cell (kept at zero)
    last_column: Tensor  # slots of the last column's cells, whose cell states no later cell reads

    def to(self, device: torch.device) -> DiagonalGeometry:
        return DiagonalGeometry(self.diagonals, *(t.to(device) for t in self[1:]))


@functools.cache
def diagonal_geometry(height: int, width: int) -> DiagonalGeometry:
    """The skew of the Diagonal BiLSTM as index maps.

    Cells are numbered diagonal by diagonal (d = i + j), rows in order within a diagonal. The states have a slot per
    (diagonal + 1, row + 1) over [W + H] x [H + 1]: the slots (0, *) and (*, 0) and every slot outside the image
    read zero, so a cell's upper neighbour (i - 1, j) is slot (d, i) and its left neighbour (i, j - 1) slot
    (d, i + 1), whether inside the image or not. The right-to-left direction is the same scan on the mirrored image.
    """
    diagonals, positions, upper = [], [[], []], []
    slots_per_diagonal = height + 1
    for diagonal in range(height + width - 1):
        first, last = max(0, diagonal - width + 1), min(diagonal, height - 1)
        diagonals.append((first, last - first + 1, len(upper)))
        for i in range(first, last + 1):
            j = diagonal - i
            positions[0].append(i * width + j)
            positions[1].append(i * width + width - 1 - j)
            upper.append(diagonal * slots_per_diagonal + i)
    i, j = torch.arange(height)[:, None], torch.arange(width)[None, :]
    left_to_right = ((i + j + 1) * slots_per_diagonal + i + 1).flatten()
    above_mirrored = (i - 1 + width - 1 - j + 1) * slots_per_diagonal + i
    right_to_left_above = torch.where(i > 0, above_mirrored, 0).flatten()
    upper = torch.tensor(upper)
    read = torch.zeros((height + width) * slots_per_diagonal, dtype=torch.bool)
    read[upper], read[upper + 1], read[0] = True, True, True
    read[left_to_right] = False
    return DiagonalGeometry(
        diagonals,
        torch.tensor(positions),
        upper,
        upper + 1,
        left_to_right,
        right_to_left_above,
        read.nonzero().flatten(),
        left_to_right.view(height, width)[:, -1],
    )


class DiagonalScan(torch.autograd.Function):
    """One Diagonal BiLSTM layer's input-to-state products and recurrence, both directions in one scan.

    ``x`` [2h, H, W, B]: the layer's input; ``kernels`` [2, 4h, 2h] and ``biases`` [2, 4h]: K_is per direction (0 left
    to right, 1 right to left, which reads the mirrored image); ``weight`` [2, 2h, 4h]: K_ss per direction over
    (upper state, left state). Returns the left-to-right hidden map and the right-to-left one shifted down a row,
    each [h, H, W, B].

    The skew is an index map (:func:`diagonal_geometry`): each direction's input is gathered into diagonal order once,
    so that a diagonal's gates are one block of columns, and both directions are stacked along the features, so that
    a diagonal's K_ss is two multiply-adds with block-diagonal weights (upper and left neighbours).
    """

    @staticmethod
    @_outside_autocast
    def forward(ctx: FunctionCtx, x: Tensor, kernels: Tensor, biases: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        two_h, height, width, batch = x.shape
        h = two_h // 2
        geometry = diagonal_geometry(height, width).to(x.device)
        diagonals, positions, _, _, left_to_right, right_to_left_above, outside, _ = geometry
        inputs = x.new_empty(2, two_h, height * width, batch)  # [direction, 2h, cell, b]
        for direction in range(2):
            torch.index_select(x.view(two_h, -1, batch), 1, positions[direction], out=inputs[direction])
        inputs = inputs.view(2, two_h, -1)
        gates = torch.baddbmm(biases[:, :, None], kernels, inputs)  # [direction, 4h, (cell, b)]
        upper_weight = torch.block_diag(weight[0, :h].T, weight[1, :h].T)  # [(direction, 4h), (direction, h)]
        left_weight = torch.block_diag(weight[0, h:].T, weight[1, h:].T)
        # every slot but the outside ones is written before it is read
        hidden, cell = (x.new_empty(2 * h, (height + width) * (height + 1), batch) for _ in range(2))
        hidden, cell = (t.index_fill_(1, outside, 0).view(2, h, -1) for t in (hidden, cell))
        tanh_cell = x.new_empty(2, h, height * width * batch)
        for diagonal, (first, rows, cells) in enumerate(diagonals):
            step = slice(cells * batch, (cells + rows) * batch)
            above = slice((diagonal * (height + 1) + first) * batch, (diagonal * (height + 1) + first + rows) * batch)
            beside = slice(above.start + batch, above.stop + batch)
            now = slice(beside.start + (height + 1) * batch, beside.stop + (height + 1) * batch)
            gates.view(8 * h, -1)[:, step].addmm_(upper_weight, hidden.view(2 * h, -1)[:, above])
            gates.view(8 * h, -1)[:, step].addmm_(left_weight, hidden.view(2 * h, -1)[:, beside])
            _lstm_cell_forward(
                gates[:, :, step], cell[:, :, beside], cell[:, :, now], tanh_cell[:, :, step], hidden[:, :, now]
            )
        ctx.save_for_backward(inputs, gates, cell, tanh_cell, hidden, kernels, upper_weight, left_weight)
        ctx.geometry = geometry
        states = hidden.view(2, h, -1, batch)
        shape = (h, height, width, batch)
        return (
            states[0].index_select(1, left_to_right).view(shape),
            states[1].index_select(1, right_to_left_above).view(shape),
        )

    @staticmethod
    @_outside_autocast
    def backward(ctx: FunctionCtx, d_left_to_right: Tensor, d_right_to_left: Tensor) -> tuple[Tensor, ...]:
        inputs, gates, cell, tanh_cell, hidden, kernels, upper_weight, left_weight = ctx.saved_tensors
        diagonals, positions, upper, left, left_to_right, right_to_left_above, _, last_column = ctx.geometry
        h, height, width, batch = d_left_to_right.shape
        # Slots that hold no cell collect gradients that are never read: only the cells' slots are initialized.
        d_hidden, d_cell = torch.empty_like(hidden), torch.empty_like(cell)
        d_states = d_hidden.view(2, h, -1, batch)
        d_states[0].index_copy_(1, left_to_right, d_left_to_right.reshape(h, -1, batch))
        d_states[1].index_fill_(1, left_to_right, 0)
        d_states[1].index_add_(1, right_to_left_above, d_right_to_left.reshape(h, -1, batch))
        d_cell.view(2, h, -1, batch).index_fill_(2, last_column, 0)
        d_gates = torch.empty_like(gates)
        for diagonal, (first, rows, cells) in reversed(list(enumerate(diagonals))):
            step = slice(cells * batch, (cells + rows) * batch)
            above = slice((diagonal * (height + 1) + first) * batch, (diagonal * (height + 1) + first + rows) * batch)
            beside = slice(above.start + batch, above.stop + batch)
            now = slice(beside.start + (height + 1) * batch, beside.stop + (height + 1) * batch)
            _lstm_cell_backward(
                d_hidden[:, :, now],
                d_cell[:, :, now],
                gates[:, :, step],
                tanh_cell[:, :, step],
                cell[:, :, beside],
                d_gates[:, :, step],
                d_cell[:, :, beside],
            )
            d_step = d_gates.view(8 * h, -1)[:, step]
            d_hidden.view(2 * h, -1)[:, above].addmm_(upper_weight.T, d_step)
            d_hidden.view(2 * h, -1)[:, beside].addmm_(left_weight.T, d_step)
        states = hidden.view(2, h, -1, batch)
        d_gates_t = d_gates.transpose(1, 2)
        d_weight = torch.cat(
            [torch.bmm(states.index_select(2, slots).view(2, h, -1), d_gates_t) for slots in (upper, left)], 1
        )  # [direction, 2h, 4h]
        d_inputs = torch.bmm(kernels.transpose(1, 2), d_gates).view(2, 2 * h, -1, batch)
        d_x = d_inputs.new_zeros(2 * h, height * width, batch)
        for direction in range(2):
            d_x.index_add_(1, positions[direction], d_inputs[direction])
        return (
            d_x.view(2 * h, height, width, batch),
            torch.bmm(d_gates, inputs.transpose(1, 2)),
            d_gates.sum(2),
            d_weight,
        )


class PixelCNNBlock(nn.Module):
    """Figure 5 (left): ReLU, 1x1 (2h -> h), ReLU, masked 3x3 B (h -> h), ReLU, 1x1 (h -> 2h), plus the input."""

    def __init__(self, hidden: int, colors: int) -> None:
        super().__init__()
        self.reduce = MaskedConv2d(2 * hidden, hidden, 1, "B", colors)
        self.conv = MaskedConv2d(hidden, hidden, 3, "B", colors)
        self.expand = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(F.relu(x))
        return x + self.expand(F.relu(self.conv(F.relu(reduced))))

    def begin(self, n: int, height: int, width: int) -> Tensor:
        return self.conv.empty_buffer(n, height, width)

    def begin_row(self, buffer: Tensor, i: int) -> None:
        pass

    def step(self, buffer: Tensor, x: Tensor, i: int, j: int) -> Tensor:
        self.conv.write(buffer, F.relu(self.reduce.pointwise(F.relu(x))), i, j)
        return x + self.expand.pointwise(F.relu(self.conv.at(buffer, i, j)))

    def end_row(self, buffer: Tensor, i: int) -> None:
        pass


@dataclass
class RowLSTMState:
    inputs: Tensor  # [n, 2h, H, W + 2] the layer's input, padded for the 1x3 convolution
    state_gates: Tensor  # [n, W, 4h] K_ss (*) h_above for the current row
    hidden_above: Tensor  # [n, W, h] previous row
    cell_above: Tensor
    hidden_row: Tensor  # [n, W, h] current row, filled left to right
    cell_row: Tensor


class RowLSTMLayer(nn.Module):
    """Row LSTM with residual connection: 2h features in and out, h LSTM features, kernels of width 3 (the paper's,
    which :class:`RowScan` assumes).

    Training runs the scan as :class:`RowScan` (K_is and K_ss as matrix products on feature-major rows); sampling
    (``begin`` .. ``end_row``) evaluates one position at a time, with K_ss a matrix product over each position's
    window of the row above.
    """

    kernel = 3

    def __init__(self, hidden: int, colors: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d(
            2 * hidden, 4 * hidden, (1, self.kernel), "B", colors, out_groups=gate_groups(hidden, colors)
        )
        self.state_to_state = nn.Linear(self.kernel * hidden, 4 * hidden, bias=False)
        self.output = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)
        forget_bias_one(self.input_to_state, hidden)

    def _state_gates(self, hidden_above: Tensor) -> Tensor:
        """K_ss (*) h_above: [n, W, h] -> [n, W, 4h]."""
        half = self.kernel // 2
        windows = F.pad(hidden_above, (0, 0, half, half)).unfold(1, self.kernel, 1)  # [n, W, h, k]
        return self.state_to_state(windows.flatten(2))

    def forward(self, x: Tensor) -> Tensor:
        """[B, 2h, H, W] -> [B, 2h, H, W], computed in the memory order [2h, H, B, W] (the row scan's), which it also
        returns, so that stacked layers pass it on without copies."""
        rows = x.permute(1, 2, 0, 3).contiguous()  # [2h, H, B, W]
        kernel = self.input_to_state.weight  # [4h, 2h, 1, 3]; the right tap is masked to zero
        hidden = RowScan.apply(
            rows, kernel[:, :, 0, 1], kernel[:, :, 0, 0], self.input_to_state.bias, self.state_to_state.weight
        )
        out = self.output.pointwise_features_first(hidden).add_(rows)
        return out.permute(2, 0, 1, 3)

    def begin(self, n: int, height: int, width: int) -> RowLSTMState:
        zeros = self.output.weight.new_zeros(n, width, self.hidden)
        return RowLSTMState(
            self.input_to_state.empty_buffer(n, height, width), zeros, zeros, zeros, zeros.clone(), zeros.clone()
        )

    def begin_row(self, state: RowLSTMState, i: int) -> None:
        state.state_gates = self._state_gates(state.hidden_above)

    def step(self, state: RowLSTMState, x: Tensor, i: int, j: int) -> Tensor:
        self.input_to_state.write(state.inputs, x, i, j)
        gates = self.input_to_state.at(state.inputs, i, j) + state.state_gates[:, j]
        hidden, cell = lstm_update(gates, state.cell_above[:, j])
        state.hidden_row[:, j], state.cell_row[:, j] = hidden, cell
        return x + self.output.pointwise(hidden)

    def end_row(self, state: RowLSTMState, i: int) -> None:
        state.hidden_above, state.cell_above = state.hidden_row, state.cell_row
        state.hidden_row, state.cell_row = torch.zeros_like(state.hidden_row), torch.zeros_like(state.cell_row)


@dataclass
class DiagonalState:
    inputs: Tensor  # [n, 2h, H, W] the layer's input
    hidden_left_to_right: Tensor  # [n, H + 1, W + 1, h] position (i, j) at [i + 1, j + 1]; row 0, column 0 zero
    cell_left_to_right: Tensor
    hidden_right_to_left: Tensor  # [n, H + 1, W + 1, h] position (i, j) at [i + 1, j]; row 0, column W zero
    cell_right_to_left: Tensor


class DiagonalBiLSTMLayer(nn.Module):
    """Diagonal BiLSTM with residual connection: two directions of h features each, summed, then 1x1 to 2h.

    Training runs both directions in one scan over the diagonals (:class:`DiagonalScan`), each diagonal computing
    only its own cells; sampling (``begin`` .. ``end_row``) evaluates one position at a time.
    """

    def __init__(self, hidden: int, colors: int) -> None:
        super().__init__()
        self.hidden = hidden
        groups = gate_groups(hidden, colors)
        self.left_to_right_input = MaskedConv2d(2 * hidden, 4 * hidden, 1, "B", colors, out_groups=groups)
        # The right-to-left map is shifted down a row, so it may read all colours of a pixel: no mask needed.
        self.right_to_left_input = nn.Conv2d(2 * hidden, 4 * hidden, 1)
        bound = 1 / math.sqrt(2 * hidden)  # nn.Linear's default initialization
        self.state_to_state = nn.Parameter(torch.empty(2, 2 * hidden, 4 * hidden).uniform_(-bound, bound))
        self.output = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)
        forget_bias_one(self.left_to_right_input, hidden)
        forget_bias_one(self.right_to_left_input, hidden)

    def directions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Left-to-right hidden map and the right-to-left map shifted down one row, each [B, h, H, W] in the memory
        order [h, H, W, B] (the diagonal scan's)."""
        left_to_right, right_to_left = self._scan(batch_last(x))
        return left_to_right.permute(3, 0, 1, 2), right_to_left.permute(3, 0, 1, 2)

    def _scan(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """[2h, H, W, B] -> the left-to-right map and the shifted right-to-left map, each [h, H, W, B]."""
        kernels = [self.left_to_right_input.weight[:, :, 0, 0], self.right_to_left_input.weight[:, :, 0, 0]]
        biases = torch.stack([self.left_to_right_input.bias, self.right_to_left_input.bias])
        return DiagonalScan.apply(positions, torch.stack(kernels), biases, self.state_to_state)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 2h, H, W] -> [B, 2h, H, W], computed in the memory order [2h, H, W, B] (the diagonal scan's), which it
        also returns, so that stacked layers pass it on without copies."""
        positions = batch_last(x)
        left_to_right, right_to_left = self._scan(positions)
        out = self.output.pointwise_features_first(left_to_right + right_to_left).add_(positions)
        return out.permute(3, 0, 1, 2)

    def _state_gates(self, direction: int, above: Tensor, beside: Tensor) -> Tensor:
        """K_ss at one position of ``direction`` (0 left-to-right, 1 right-to-left): [n, 4h]."""
        return torch.cat([above, beside], -1) @ self.state_to_state[direction]

    def begin(self, n: int, height: int, width: int) -> DiagonalState:
        zeros = self.output.weight.new_zeros(n, height + 1, width + 1, self.hidden)
        inputs = self.output.weight.new_zeros(n, 2 * self.hidden, height, width)
        return DiagonalState(inputs, zeros, zeros.clone(), zeros.clone(), zeros.clone())

    def begin_row(self, state: DiagonalState, i: int) -> None:
        pass

    def step(self, state: DiagonalState, x: Tensor, i: int, j: int) -> Tensor:
        state.inputs[:, :, i, j] = x
        above, left = state.hidden_left_to_right[:, i, j + 1], state.hidden_left_to_right[:, i + 1, j]
        gates = self.left_to_right_input.pointwise(x) + self._state_gates(0, above, left)
        hidden, cell = lstm_update(gates, state.cell_left_to_right[:, i + 1, j])
        state.hidden_left_to_right[:, i + 1, j + 1], state.cell_left_to_right[:, i + 1, j + 1] = hidden, cell
        return x + self.output.pointwise(hidden + state.hidden_right_to_left[:, i, j])

    def end_row(self, state: DiagonalState, i: int) -> None:
        """Sweep the finished row right to left: the next row reads it through the one-row shift."""
        width = state.inputs.shape[-1]
        row_gates = self.right_to_left_input(state.inputs[:, :, i : i + 1])[:, :, 0].transpose(1, 2)  # [n, W, 4h]
        for j in reversed(range(width)):
            above, right = state.hidden_right_to_left[:, i, j], state.hidden_right_to_left[:, i + 1, j + 1]
            gates = row_gates[:, j] + self._state_gates(1, above, right)
            hidden, cell = lstm_update(gates, state.cell_right_to_left[:, i + 1, j + 1])
            state.hidden_right_to_left[:, i + 1, j], state.cell_right_to_left[:, i + 1, j] = hidden, cell
