"""Structure before learning: how many parameters a distribution over n binary pixels needs, and the simplest
models that trade generality for tractability (the lecture's part 1).

- full joint table: 2^n - 1 free parameters;
- fully independent (product of Bernoullis): n;
- k-th order Markov chain in raster order: pixel i conditions on the previous min(i, k) pixels, 2^min(i, k) each;
- FVSBN (logistic autoregressive, Frey 1998): pixel i has i - 1 weights and a bias, n(n+1)/2 in all;
- NADE (Larochelle & Murray 2011): shared encoder W (h x n), c (h), decoder V (n x h), b (n): 2nh + n + h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.models.base import AutoregressiveModel, TrainConfig, adam
from genzoo.progress import advance
from genzoo.registry import models


def full_joint_parameters(n: int) -> int:
    """Free parameters of an arbitrary distribution over n binary variables."""
    return 2**n - 1


def independent_parameters(n: int) -> int:
    return n


def markov_parameters(n: int, order: int) -> int:
    """k-th order chain: p(x_i | x_{i-k..i-1}) is a table of 2^min(i, k) Bernoulli parameters (i from 0)."""
    return sum(2 ** min(i, order) for i in range(n))


def fvsbn_parameters(n: int) -> int:
    return n * (n + 1) // 2


def nade_parameters(n: int, hidden: int) -> int:
    return 2 * n * hidden + n + hidden


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """Sum over dimensions of log Bernoulli(x | sigmoid(logits)), stable in the logits; shape [B]."""
    return (x * logits - F.softplus(logits)).flatten(1).sum(1)


class BinaryAutoregressive(AutoregressiveModel):
    """Shared by the binary chain-rule models: conditionals are Bernoulli logits [B, D]."""

    input_kind = "binary"

    def log_prob(self, x: Tensor) -> Tensor:
        return bernoulli_log_prob(x.flatten(1), self.conditionals(x))

    def _sample_sequential(self, n: int, logit_at: Callable[[Tensor, int], Tensor]) -> Tensor:
        """Raster-order ancestral sampling; ``logit_at(x, d)`` gives the logits of pixel d given x[:, :d]."""
        x = torch.zeros(n, self.dims, device=self._device())
        for d in range(self.dims):
            x[:, d] = torch.bernoulli(torch.sigmoid(logit_at(x, d)))
            advance(d + 1, self.dims)
        return x.view(n, *self.image_shape)

    def _device(self) -> torch.device:
        return next(self.parameters()).device


@dataclass
class IndependentConfig(TrainConfig):
    lr: float = 1e-2  # one logit per pixel: a large step reaches the (closed-form) optimum within an epoch


@models.register("independent")
class IndependentBernoulli(BinaryAutoregressive):
    """Every pixel an independent Bernoulli: p(x) = prod_i p_i^x_i (1 - p_i)^(1 - x_i)."""

    Config = IndependentConfig

    def __init__(self, config: IndependentConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.logits = nn.Parameter(torch.zeros(self.dims))

    def conditionals(self, x: Tensor) -> Tensor:
        return self.logits.expand(x.shape[0], -1)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        probs = torch.sigmoid(self.logits).expand(n, -1)
        return torch.bernoulli(probs).view(n, *self.image_shape)


@dataclass
class MarkovConfig(TrainConfig):
    order: int = 2
    lr: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.order <= 16:
            raise ValueError("order must be between 1 and 16")


@models.register("markov")
class MarkovChain(BinaryAutoregressive):
    """k-th order Markov chain over pixels in raster order: a logit table per pixel, indexed by its k predecessors.

    Pixels near the start have fewer predecessors; missing ones read as 0, so only 2^min(i, k) entries of pixel
    i's table are reachable (the count of ``markov_parameters``).
    """

    Config = MarkovConfig

    def __init__(self, config: MarkovConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.table = nn.Parameter(torch.zeros(self.dims, 2**config.order))
        self.register_buffer("powers", 2 ** torch.arange(config.order), persistent=False)

    def _context(self, x: Tensor) -> Tensor:
        """Index [B, D] of each pixel's k predecessors read as a binary number."""
        k = self.config.order
        padded = F.pad(x.flatten(1), (k, 0))  # [B, k + D]
        windows = padded.unfold(1, k, 1)[:, : self.dims]  # [B, D, k]: x_{d-k} .. x_{d-1}
        return (windows * self.powers.flip(0)).sum(-1).long()

    def conditionals(self, x: Tensor) -> Tensor:
        index = self._context(x)
        return self.table.gather(1, index.T).T  # [B, D]

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        def logit_at(x: Tensor, d: int) -> Tensor:
            k = self.config.order
            previous = x[:, max(0, d - k) : d]
            index = (previous * self.powers[: previous.shape[1]].flip(0)).sum(-1).long() if d else 0
            return self.table[d][index].expand(n)

        return self._sample_sequential(n, logit_at)


@dataclass
class FVSBNConfig(TrainConfig):
    lr: float = 1e-2  # each conditional is a logistic regression (convex): a large Adam step is safe (measured)
    weight_decay: float = (
        0.0  # L2 penalty on the weights: 784 regressions with up to 783 inputs each overfit 50k images
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.weight_decay < float("inf"):
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay}")


@models.register("fvsbn")
class FVSBN(BinaryAutoregressive):
    """Fully visible sigmoid belief network: p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j)."""

    Config = FVSBNConfig

    def __init__(self, config: FVSBNConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.weight = nn.Parameter(torch.zeros(self.dims, self.dims))
        self.bias = nn.Parameter(torch.zeros(self.dims))
        self.register_buffer("mask", torch.ones(self.dims, self.dims).tril(-1), persistent=False)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        groups = [{"params": [self.weight], "weight_decay": self.config.weight_decay}, {"params": [self.bias]}]
        return {"model": adam(groups, self.config.lr)}

    def conditionals(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.weight * self.mask, self.bias)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self._sample_sequential(n, lambda x, d: self.bias[d] + x[:, :d] @ self.weight[d, :d])
