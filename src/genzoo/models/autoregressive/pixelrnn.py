"""PixelRNN family: Row LSTM, Diagonal BiLSTM and PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu, ICML 2016).

The image is a sequence of pixels in raster order, each pixel's channels in the order R, G, B, and

    p(x) = prod_i p(x_i,R | x_<i) p(x_i,G | x_<i, x_i,R) p(x_i,B | x_<i, x_i,R, x_i,G)      (eq. 1-2)

is computed in one pass by a network whose every layer is masked so that the output at (pixel i, colour c) never
sees input at or after (i, c). The three architectures share table 1 of the paper:

    7x7 convolution, mask A  ->  L residual layers  ->  ReLU, 1x1 (mask B), ReLU, 1x1 (mask B)  ->  output

and differ only in the residual layer (``genzoo.nn.pixelrnn``): Row LSTM (triangular context, row by row),
Diagonal BiLSTM (the whole context, diagonal by diagonal) and PixelCNN (masked 3x3 convolutions, bounded context
with the blind spot of the original paper).

Output distribution, one design for all three (``Config.output``): ``"bernoulli"`` gives one logit per channel
for binary data (input_kind ``"binary"``, e.g. binarized-mnist); ``"softmax"`` gives a ``levels``-way softmax per
channel (eq. 2) for discrete data (input_kind ``"levels"``: mnist and colour folders with ``levels=256``). Because
the engine prepares data by ``model.input_kind``, that attribute is a property of the instance, set by ``output``.

``log_prob`` is exact, in nats. ``sample(n, conditioned_on=None, method="fast")`` draws the pixels one at a time:
``"naive"`` re-runs the whole network for every pixel and channel; ``"fast"`` evaluates each layer at the new
position only, carrying the LSTM states row by row (Row LSTM) or the left-to-right states plus one right-to-left
sweep per finished row (Diagonal BiLSTM), and a buffer of each masked convolution's input (PixelCNN). Both consume
the same uniform numbers (drawn up front, inverse-CDF sampling), so for one seed they give the same images.
``conditioned_on`` completes images: entries >= 0 are kept, entries < 0 (e.g. -1) are sampled.

Departures from the paper: Adam (the paper used RMSProp); the input of the 8-bit model is the level scaled to
[0, 1]; LSTM forget gates start with bias 1; the Diagonal BiLSTM's right-to-left input-to-state is unmasked (its
map is shifted down a row, so masking it would only hide the past); the default size (4 layers, h = 16) is smaller
for a 2-core CPU: ``PAPER_MNIST`` is the paper's binarized MNIST model (7 layers, h = 16), e.g.
``genzoo.create("diagonal_bilstm", **PAPER_MNIST)`` or ``--set layers=7 --set hidden=16``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from genzoo.errors import GenzooError
from genzoo.models.base import AutoregressiveModel, TrainConfig
from genzoo.models.structured import bernoulli_log_prob
from genzoo.nn.masked import MaskedConv2d
from genzoo.nn.pixelrnn import DiagonalBiLSTMLayer, PixelCNNBlock, RowLSTMLayer, batch_first
from genzoo.progress import advance
from genzoo.registry import models

OUTPUTS = ("bernoulli", "softmax")
SAMPLING_METHODS = ("fast", "naive")
PAPER_MNIST = {"layers": 7, "hidden": 16}  # section 5.4: the binarized MNIST model of table 4


def full_precision(logits: Tensor) -> Tensor:
    """Logits from a bf16 autocast region in float32 (log-probabilities and CDFs need the mantissa)."""
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


@dataclass
class PixelRNNConfig(TrainConfig):
    layers: int = 4  # residual layers between the 7x7 input convolution and the output
    hidden: int = 16  # h: LSTM / inner features; the residual stream has 2h
    head: int = 64  # features of the 1x1 output layers
    output: str = "bernoulli"  # "bernoulli" (binary data) or "softmax" (levels-way softmax per channel)
    levels: int = 256  # categories of the softmax output
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.layers < 1 or self.hidden < 1 or self.head < 1:
            raise ValueError("layers, hidden and head must be at least 1")
        if self.levels < 2:
            raise ValueError("levels must be at least 2")


class PixelRNN(AutoregressiveModel):
    """Shared body of the three architectures; a subclass chooses the residual layer."""

    Config = PixelRNNConfig

    def __init__(self, config: PixelRNNConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        colors = self.image_shape[0]
        if 2 * config.hidden < colors or config.hidden < colors or config.head < colors:
            raise GenzooError(f"hidden and head must be at least the {colors} colour channels")
        self.categories = 1 if config.output == "bernoulli" else config.levels
        self.input_conv = MaskedConv2d(colors, 2 * config.hidden, 7, "A", colors)
        self.layers = nn.ModuleList(self.make_layer(config.hidden, colors) for _ in range(config.layers))
        self.head_hidden = MaskedConv2d(2 * config.hidden, config.head, 1, "B", colors)
        self.head_output = MaskedConv2d(config.head, colors * self.categories, 1, "B", colors)

    def make_layer(self, hidden: int, colors: int) -> nn.Module:
        raise NotImplementedError

    @property
    def input_kind(self) -> str:
        return "binary" if self.config.output == "bernoulli" else "levels"

    def _network_input(self, x: Tensor) -> Tensor:
        """Data (0/1 floats or levels) -> the float map the 7x7 convolution reads."""
        x = x.to(self.input_conv.bias.dtype)
        return x if self.categories == 1 else x / (self.config.levels - 1)

    def _logits(self, x: Tensor) -> Tensor:
        """[B, C, H, W] data -> logits [B, C, H, W] (Bernoulli) or [B, C, L, H, W] (softmax)."""
        features = self.input_conv(self._network_input(x))
        for layer in self.layers:
            features = layer(features)
        logits = self.head_output(F.relu(self.head_hidden(F.relu(batch_first(features)))))
        if self.categories == 1:
            return logits
        return logits.unflatten(1, (self.image_shape[0], self.categories))

    def conditionals(self, x: Tensor) -> Tensor:
        """Parameters of p(x_d | x_<d), d = (row * W + column) * C + colour: logits [B, D] or [B, D, L]."""
        logits = full_precision(self._logits(x))
        if self.categories == 1:
            return logits.permute(0, 2, 3, 1).flatten(1)
        return logits.permute(0, 3, 4, 1, 2).flatten(1, 3)

    def log_prob(self, x: Tensor) -> Tensor:
        logits = full_precision(self._logits(x))
        if self.categories == 1:
            return bernoulli_log_prob(x, logits)
        log_probs = F.log_softmax(logits, 2).gather(2, x.long().unsqueeze(2))  # [B, C, 1, H, W]
        return log_probs.flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, conditioned_on: Tensor | None = None, method: str = "fast") -> Tensor:
        """``n`` images (0/1 floats, or long levels); ``conditioned_on`` [n, C, H, W]: entries >= 0 are kept."""
        if method not in SAMPLING_METHODS:
            raise GenzooError(f"method must be one of {', '.join(SAMPLING_METHODS)}, got {method!r}")
        device, dtype = self.input_conv.bias.device, self.input_conv.bias.dtype
        canvas = torch.zeros(n, *self.image_shape, device=device, dtype=dtype)
        given = torch.zeros(n, *self.image_shape, dtype=torch.bool, device=device)
        if conditioned_on is not None:
            conditioned_on = conditioned_on.to(device, dtype).expand(n, *self.image_shape)
            given = conditioned_on >= 0
            canvas = torch.where(given, conditioned_on, canvas)
        uniforms = torch.rand(n, *self.image_shape, device=device, dtype=dtype)
        with parametrize.cached():
            (self._sample_fast if method == "fast" else self._sample_naive)(canvas, given, uniforms)
        return canvas if self.categories == 1 else canvas.long()

    def _draw(self, canvas: Tensor, given: Tensor, uniforms: Tensor, logits: Tensor, c: int, i: int, j: int) -> None:
        """Set colour c of pixel (i, j) from its logits ([n] or [n, L]) by inverse CDF, keeping given values."""
        u = uniforms[:, c, i, j]
        if self.categories == 1:
            value = (u < torch.sigmoid(full_precision(logits))).to(canvas.dtype)
        else:
            cdf = torch.softmax(full_precision(logits), -1).cumsum(-1)
            value = (cdf < u[:, None]).sum(-1).clamp(max=self.categories - 1).to(canvas.dtype)
        canvas[:, c, i, j] = torch.where(given[:, c, i, j], canvas[:, c, i, j], value)

    def _sample_naive(self, canvas: Tensor, given: Tensor, uniforms: Tensor) -> None:
        colors, height, width = self.image_shape
        for i in range(height):
            for j in range(width):
                for c in range(colors):
                    if bool(given[:, c, i, j].all()):
                        continue
                    logits = self._logits(canvas)[:, c]  # [n, H, W] or [n, L, H, W]
                    self._draw(canvas, given, uniforms, logits[..., i, j], c, i, j)
                advance(i * width + j + 1, height * width)

    def _sample_fast(self, canvas: Tensor, given: Tensor, uniforms: Tensor) -> None:
        n, (colors, height, width) = len(canvas), self.image_shape
        image = self.input_conv.empty_buffer(n, height, width)
        states = [layer.begin(n, height, width) for layer in self.layers]
        for i in range(height):
            for layer, state in zip(self.layers, states):
                layer.begin_row(state, i)
            for j in range(width):
                # Colour c's features at (i, j) see only colours < c of the pixel, so after the last colour's
                # pass every layer's state at (i, j) is final.
                for c in range(colors):
                    features = self.input_conv.at(image, i, j)
                    for layer, state in zip(self.layers, states):
                        features = layer.step(state, features, i, j)
                    logits = self.head_output.pointwise(F.relu(self.head_hidden.pointwise(F.relu(features))))
                    self._draw(
                        canvas, given, uniforms, logits.view(n, colors, self.categories)[:, c].squeeze(-1), c, i, j
                    )
                    self.input_conv.write(image, self._network_input(canvas[:, :, i, j]), i, j)
            for layer, state in zip(self.layers, states):
                layer.end_row(state, i)
            advance(i + 1, height)


@models.register("row_lstm")
class RowLSTM(PixelRNN):
    """PixelRNN with Row LSTM layers (section 3.1): triangular context, rows computed in parallel."""

    def make_layer(self, hidden: int, colors: int) -> nn.Module:
        return RowLSTMLayer(hidden, colors)


@models.register("diagonal_bilstm")
class DiagonalBiLSTM(PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers (section 3.2): the whole available context from the first layer."""

    def make_layer(self, hidden: int, colors: int) -> nn.Module:
        return DiagonalBiLSTMLayer(hidden, colors)


@models.register("pixelcnn")
class PixelCNN(PixelRNN):
    """PixelCNN (section 3.4): residual blocks around masked 3x3 convolutions; parallel in training."""

    def make_layer(self, hidden: int, colors: int) -> nn.Module:
        return PixelCNNBlock(hidden, colors)
