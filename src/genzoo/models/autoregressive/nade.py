"""NADE (Larochelle & Murray, AISTATS 2011) and RNADE (Uria, Murray & Larochelle, NeurIPS 2013).

NADE, eq. (4)-(6) of the paper: with one encoder W shared by all conditionals,

    a_d = c + sum_{j<d} x_j W_j,   h_d = sigmoid(a_d),   p(x_d = 1 | x_<d) = sigmoid(b_d + V_d . h_d),

so a_{d+1} = a_d + x_d W_d and both density and sampling cost O(DH). Departures: Adam instead of the paper's
SGD, and the training/evaluation density uses an equivalent sparse evaluation (see ``_conditionals_of_binary``).

RNADE: the same recurrence (with the paper's per-dimension activation rescaling rho_d) parameterizes, for each
real-valued x_d, a mixture of K Gaussians: weights softmax(V^pi_d h_d + b^pi_d), means V^mu_d h_d + b^mu_d,
scales exp(V^sigma_d h_d + b^sigma_d). Trained on dequantized grey levels in [0, 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.models.base import AutoregressiveModel, TrainConfig
from genzoo.models.structured import BinaryAutoregressive, bernoulli_log_prob
from genzoo.progress import advance
from genzoo.registry import models

GATHER_CHUNK = 8  # images per cache-sized block in GatherDot


def exclusive_prefix_activations(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """a_d = bias + sum_{j<d} x_j W_j for every d: [B, D] inputs -> [B, D, H], exactly blind to x_>=d."""
    contributions = x[:, :-1, None] * weight[:-1]  # [B, D - 1, H]
    return bias + F.pad(contributions.cumsum(1), (0, 0, 1, 0))


class GatherDot(torch.autograd.Function):
    """``out[b, d] = h[row[b, d]] . V[d]`` without materializing the [B, D, H] gathered hidden states.

    Written by hand because no library op fuses a row gather with a per-row dot product; doing it in blocks of
    a few images keeps the work in cache and makes NADE training an order of magnitude faster on a CPU.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, row: Tensor) -> Tensor:  # noqa: ANN001
        batch, dims = row.shape
        out = h.new_empty(batch, dims)
        block = h.new_empty(GATHER_CHUNK * dims, h.shape[1])
        for start in range(0, batch, GATHER_CHUNK):
            rows = row[start : start + GATHER_CHUNK].reshape(-1)
            n = rows.numel() // dims
            gathered = torch.index_select(h, 0, rows, out=block[: rows.numel()]).view(n, dims, -1)
            torch.sum(gathered.mul_(weight), -1, out=out[start : start + n])
        ctx.save_for_backward(h, weight, row)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # noqa: ANN001
        h, weight, row = ctx.saved_tensors
        batch, dims = row.shape
        grad_h, grad_weight = torch.zeros_like(h), torch.zeros_like(weight)
        block = h.new_empty(GATHER_CHUNK * dims, h.shape[1])
        for start in range(0, batch, GATHER_CHUNK):
            rows = row[start : start + GATHER_CHUNK].reshape(-1)
            n = rows.numel() // dims
            g = grad[start : start + n, :, None]
            gathered = torch.index_select(h, 0, rows, out=block[: rows.numel()]).view(n, dims, -1)
            grad_weight += gathered.mul_(g).sum(0)
            torch.mul(g, weight, out=gathered)
            grad_h.index_add_(0, rows, gathered.view(n * dims, -1))
        return grad_h, grad_weight, None


@dataclass
class NADEConfig(TrainConfig):
    hidden: int = 500
    lr: float = 3e-3  # measured better than 1e-3 (benchmarks/log/likelihood.md, "NADE's learning rate")


@models.register("nade")
class NADE(BinaryAutoregressive):
    """Neural autoregressive distribution estimator for binary images."""

    Config = NADEConfig

    def __init__(self, config: NADEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        dims, hidden = self.dims, config.hidden
        self.W = nn.Parameter(torch.randn(dims, hidden) / math.sqrt(dims))  # row j: input j's weights
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(dims, hidden) / math.sqrt(hidden))
        self.b = nn.Parameter(torch.zeros(dims))

    def conditionals(self, x: Tensor) -> Tensor:
        """Dense reference evaluation, differentiable in x: logits [B, D] of p(x_d = 1 | x_<d)."""
        x = x.flatten(1)
        return (torch.sigmoid(exclusive_prefix_activations(x, self.W, self.c)) * self.V).sum(-1) + self.b

    def _conditionals_of_binary(self, x: Tensor) -> Tensor:
        """The same logits for 0/1 inputs, exploiting that a_d only changes after a pixel equal to 1.

        Each image has (ones + 1) distinct hidden vectors instead of D: they are computed once ("rows") and each
        position reads the row of the ones before it. Equal to ``conditionals`` (tested), about 10x faster.
        """
        batch = x.shape[0]
        before = x.cumsum(1) - x  # [B, D] ones strictly before d
        image, position = x.nonzero(as_tuple=True)
        rank = before[image, position].long()
        slots = int(x.sum(1).max()) + 1  # hidden rows per image, padded to the fullest image
        increments = torch.zeros(batch * slots, self.c.shape[0], dtype=self.W.dtype, device=x.device).index_add(
            0, image * slots + rank + 1, self.W.index_select(0, position)
        )
        h = torch.sigmoid(self.c + increments.view(batch, slots, -1).cumsum(1)).view(batch * slots, -1)
        row = torch.arange(batch, device=x.device)[:, None] * slots + before.long()  # [B, D]
        return GatherDot.apply(h, self.V, row) + self.b

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return bernoulli_log_prob(x, self._conditionals_of_binary(x))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        a = self.c.expand(n, -1).clone()
        x = torch.zeros(n, self.dims, device=a.device)
        for d in range(self.dims):
            p = torch.sigmoid(torch.sigmoid(a) @ self.V[d] + self.b[d])
            x[:, d] = torch.bernoulli(p)
            a.addr_(x[:, d], self.W[d])
            advance(d + 1, self.dims)
        return x.view(n, *self.image_shape)


@dataclass
class RNADEConfig(TrainConfig):
    hidden: int = 100
    components: int = 10
    lr: float = 1e-3


@models.register("rnade")
class RNADE(AutoregressiveModel):
    """Real-valued NADE: each conditional a mixture of Gaussians; density in nats on [0, 1)^D."""

    Config = RNADEConfig
    input_kind = "dequantized"

    def __init__(self, config: RNADEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        dims, hidden, k = self.dims, config.hidden, config.components
        self.W = nn.Parameter(torch.randn(dims, hidden) / math.sqrt(dims))
        self.c = nn.Parameter(torch.zeros(hidden))
        self.rho = nn.Parameter(torch.ones(dims))  # activation rescaling of the RNADE paper
        self.V = nn.Parameter(torch.randn(dims, hidden, 3 * k) / math.sqrt(hidden))
        bias = torch.zeros(dims, 3 * k)
        bias[:, k : 2 * k] = torch.linspace(0, 1, k)  # spread the initial means over the data range
        bias[:, 2 * k :] = math.log(0.2)
        self.b = nn.Parameter(bias)

    def _mixture(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """params [..., 3K] -> log mixture weights, means, log scales."""
        logits, mean, log_scale = params.chunk(3, dim=-1)
        return F.log_softmax(logits, -1), mean, log_scale.clamp(min=-7.0)

    def conditionals(self, x: Tensor) -> Tensor:
        """Mixture parameters [B, D, 3K] of p(x_d | x_<d)."""
        h = torch.sigmoid(self.rho[:, None] * exclusive_prefix_activations(x.flatten(1), self.W, self.c))
        return torch.bmm(h.transpose(0, 1), self.V).transpose(0, 1) + self.b  # [B, D, 3K]

    def log_prob(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        log_weight, mean, log_scale = self._mixture(self.conditionals(x))
        z = (x[:, :, None] - mean) * torch.exp(-log_scale)
        log_normal = -0.5 * z**2 - log_scale - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_weight + log_normal, -1).sum(1)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        a = self.c.expand(n, -1).clone()
        x = torch.zeros(n, self.dims, device=a.device)
        for d in range(self.dims):
            h = torch.sigmoid(self.rho[d] * a)
            log_weight, mean, log_scale = self._mixture(h @ self.V[d] + self.b[d])
            component = torch.multinomial(log_weight.exp(), 1)
            chosen_mean, chosen_log_scale = mean.gather(1, component)[:, 0], log_scale.gather(1, component)[:, 0]
            x[:, d] = chosen_mean + chosen_log_scale.exp() * torch.randn(n, device=a.device)
            a.addr_(x[:, d], self.W[d])
            advance(d + 1, self.dims)
        return x.view(n, *self.image_shape)
