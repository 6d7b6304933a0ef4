"""Masked convolutions of PixelRNN (van den Oord et al., ICML 2016, section 3.4), with colour channel masking.

A pixel's channels are generated in the order R -> G -> B. Every feature map is split into as many contiguous
channel groups as the image has colours; a weight from an input feature of group ``g_in`` to an output feature of
group ``g_out`` at the kernel centre is allowed when ``g_in < g_out`` (mask A, the first layer: a pixel's own colour
is never seen) or ``g_in <= g_out`` (mask B, every later layer). Kernel taps above the centre row, and left of the
centre in its row, are always allowed; taps below or right of the centre never are.

The mask is a ``torch.nn.utils.parametrize`` parametrization of the weight, so gradients of masked weights are
exactly zero and ``parametrize.cached()`` evaluates the masked weight once during pixel-by-pixel sampling.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

MaskType = Literal["A", "B"]


def channel_groups(channels: int, colors: int) -> Tensor:
    """Colour group of each of ``channels`` features: a contiguous split into ``colors`` parts, [channels]."""
    if channels < colors:
        raise ValueError(f"{channels} features cannot be split into {colors} colour groups")
    return torch.arange(channels) * colors // channels


def causal_mask(kernel_size: tuple[int, int], in_groups: Tensor, out_groups: Tensor, mask_type: MaskType) -> Tensor:
    """0/1 mask [out, in, kh, kw] of a convolution whose output at the centre may not see the future."""
    kh, kw = kernel_size
    mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)
    centre_row, centre_col = kh // 2, kw // 2
    mask[:, :, :centre_row] = 1
    mask[:, :, centre_row, :centre_col] = 1
    earlier = in_groups[None, :] < out_groups[:, None]
    same_or_earlier = in_groups[None, :] <= out_groups[:, None]
    mask[:, :, centre_row, centre_col] = (earlier if mask_type == "A" else same_or_earlier).float()
    return mask


class CausalMask(nn.Module):
    """Parametrization ``weight -> weight * mask``."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded convolution masked to respect the raster and colour order.

    ``in_groups`` / ``out_groups`` default to a contiguous split of the channels into ``colors`` groups; pass them
    for layouts such as LSTM gates (four blocks of h features, each split by colour).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        mask_type: MaskType,
        colors: int = 1,
        in_groups: Tensor | None = None,
        out_groups: Tensor | None = None,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError("masked convolutions need odd kernel sizes (a centre tap)")
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        in_groups = channel_groups(in_channels, colors) if in_groups is None else in_groups
        out_groups = channel_groups(out_channels, colors) if out_groups is None else out_groups
        parametrize.register_parametrization(
            self, "weight", CausalMask(causal_mask((kh, kw), in_groups, out_groups, mask_type))
        )

    # Incremental evaluation, one position at a time (fast sampling). The input is kept in a buffer padded like the
    # forward pass; rows below the centre are masked, so only rows up to the current one are stored or read.

    def empty_buffer(self, n: int, height: int, width: int) -> Tensor:
        kh, kw = self.kernel_size
        return self.weight.new_zeros(n, self.in_channels, height + kh // 2, width + 2 * (kw // 2))

    def write(self, buffer: Tensor, value: Tensor, i: int, j: int) -> None:
        """Store the input ``value`` [n, in] of position (i, j) in ``buffer``."""
        kh, kw = self.kernel_size
        buffer[:, :, i + kh // 2, j + kw // 2] = value

    def at(self, buffer: Tensor, i: int, j: int) -> Tensor:
        """The output [n, out] at position (i, j), equal to ``forward`` there."""
        kh, kw = self.kernel_size
        rows = kh // 2 + 1
        patch = buffer[:, :, i : i + rows, j : j + kw]  # [n, in, rows, kw]
        weight = self.weight[:, :, :rows]
        return F.linear(patch.reshape(len(patch), -1), weight.reshape(self.out_channels, -1), self.bias)

    def pointwise(self, value: Tensor) -> Tensor:
        """A 1x1 convolution applied to the features [n, in] of one position."""
        if self.kernel_size != (1, 1):
            raise ValueError("pointwise needs a 1x1 kernel")
        return F.linear(value, self.weight[:, :, 0, 0], self.bias)

    def pointwise_features_first(self, x: Tensor) -> Tensor:
        """A 1x1 convolution of feature-major features [in, ...] -> [out, ...] (one matrix product)."""
        if self.kernel_size != (1, 1):
            raise ValueError("pointwise needs a 1x1 kernel")
        out = torch.addmm(self.bias[:, None], self.weight[:, :, 0, 0], x.reshape(self.in_channels, -1))
        return out.view(self.out_channels, *x.shape[1:])
