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
  2x1 convolution over the previous column, scanned column by column (one diagonal of the image per step). The
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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.nn.masked import MaskedConv2d, channel_groups


def skew(x: Tensor) -> Tensor:
    """[..., H, W] -> [..., H, W + H - 1] with ``out[..., i, i + j] = x[..., i, j]`` and zeros elsewhere."""
    height, width = x.shape[-2:]
    flat = F.pad(x, (0, height)).flatten(-2)  # each row followed by H zeros
    return flat[..., : height * (width + height - 1)].unflatten(-1, (height, width + height - 1))


def unskew(x: Tensor) -> Tensor:
    """Inverse of :func:`skew`: [..., H, W + H - 1] -> [..., H, W]."""
    height, skewed_width = x.shape[-2:]
    width = skewed_width - height + 1
    flat = F.pad(x.flatten(-2), (0, height))  # reading rows of length W + H steps one column right per row
    return flat.unflatten(-1, (height, width + height))[..., :width]


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
    """Row LSTM with residual connection: 2h features in and out, h LSTM features, kernels of width 3.

    The recurrence runs channels-last and K_ss is a matrix product over each position's window of the row
    above: on a CPU one GEMM per row is several times faster than a tiny 1D convolution.
    """

    def __init__(self, hidden: int, colors: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden, self.kernel = hidden, kernel
        self.input_to_state = MaskedConv2d(
            2 * hidden, 4 * hidden, (1, kernel), "B", colors, out_groups=gate_groups(hidden, colors)
        )
        self.state_to_state = nn.Linear(kernel * hidden, 4 * hidden, bias=False)
        self.output = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)
        forget_bias_one(self.input_to_state, hidden)

    def _state_gates(self, hidden_above: Tensor) -> Tensor:
        """K_ss (*) h_above: [n, W, h] -> [n, W, 4h]."""
        half = self.kernel // 2
        windows = F.pad(hidden_above, (0, 0, half, half)).unfold(1, self.kernel, 1)  # [n, W, h, k]
        return self.state_to_state(windows.flatten(2))

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        input_gates = self.input_to_state(x).permute(2, 0, 3, 1).contiguous()  # [H, B, W, 4h]
        hidden = x.new_zeros(batch, width, self.hidden)
        cell = torch.zeros_like(hidden)
        rows = []
        for row_gates in input_gates.unbind(0):  # unbind: the backward stacks the rows instead of scattering each
            hidden, cell = lstm_update(row_gates + self._state_gates(hidden), cell)
            rows.append(hidden)
        return x + self.output(torch.stack(rows, 1).permute(0, 3, 1, 2))

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

    K_ss of both directions is one batched matrix product [2, 2h, 4h] over (state above, state beside), and each
    skewed column only computes its diagonal's rows (the other states are zero), halving the work of the scan.
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
        """Left-to-right hidden map and the right-to-left map shifted down one row, each [B, h, H, W]."""
        batch, _, height, width = x.shape
        input_gates = torch.stack([self.left_to_right_input(x), self.right_to_left_input(x).flip(-1)], 1)
        input_gates = skew(input_gates).permute(4, 1, 0, 3, 2).contiguous()  # [W + H - 1, 2, B, H, 4h]
        # Column c of the skewed map holds the diagonal i + j = c: rows first..last. The previous column's states,
        # padded with one zero row on each side, give each row its state above (row - 1) and beside (same row).
        hidden = cell = x.new_zeros(2, batch, 1, self.hidden)  # direction first: one bmm per column
        previous_first, columns = 0, []
        for column, column_gates in enumerate(input_gates.unbind(0)):  # [2, B, H, 4h] each
            first, last = max(0, column - width + 1), min(column, height - 1)
            offset = first - previous_first + 1  # row `first` in the padded previous column
            hidden_padded, cell_padded = F.pad(hidden, (0, 0, 1, 1)), F.pad(cell, (0, 0, 1, 1))
            rows = last - first + 1
            above = hidden_padded[:, :, offset - 1 : offset - 1 + rows]
            beside = hidden_padded[:, :, offset : offset + rows]
            neighbours = torch.cat([above, beside], -1).view(2, batch * rows, -1)
            state_gates = torch.bmm(neighbours, self.state_to_state).view(2, batch, rows, -1)
            gates = column_gates[:, :, first : last + 1] + state_gates
            hidden, cell = lstm_update(gates, cell_padded[:, :, offset : offset + rows])
            columns.append(F.pad(hidden, (0, 0, first, height - 1 - last)))
            previous_first = first
        both = unskew(torch.stack(columns, -1).permute(1, 0, 3, 2, 4))  # [B, 2, h, H, W]
        right_to_left = F.pad(both[:, 1].flip(-1), (0, 0, 1, 0))[:, :, :height]
        return both[:, 0], right_to_left

    def forward(self, x: Tensor) -> Tensor:
        left_to_right, right_to_left = self.directions(x)
        return x + self.output(left_to_right + right_to_left)

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
