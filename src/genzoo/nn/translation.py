"""Layers of the image-to-image translation GANs (CycleGAN, StarGAN), written once.

- :class:`ResnetGenerator`: Johnson et al. (2016)'s network as CycleGAN uses it (c7s1-k, two stride-2 down
  convolutions, residual blocks, two stride-2 up convolutions, c7s1-3 + tanh; instance norm, reflection padding),
  optionally conditioned on a label vector (StarGAN's target: replicated over the pixels as extra input channels,
  or through :class:`FiLMNormalization` at every normalization layer), and optionally predicting a change of its
  input instead of a new image (``output="residual"``, see the class).
- :class:`PatchDiscriminator`: the PatchGAN of Isola et al. (2017), one real/fake score per overlapping patch,
  scaled to 28x28 images (two stride-2 layers and one stride-1 layer, receptive field 26 pixels instead of 70);
  optionally an auxiliary classification head over the whole image (StarGAN's D_cls).
- :class:`ImagePool`: Shrivastava et al. (2017)'s history of generated images that CycleGAN shows its
  discriminators (buffer of 50; once full, each query returns a stored image with probability 1/2, swapping in
  the new one).
- :func:`replicate` and :func:`one_hot_groups`: label vectors as images for conditioning.
- :func:`call_on_each`: one network on several batches in one call where that is exact; with
  :func:`batch_statistics_only`, batch norm's running statistics come from the passes that translate only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Normalization = Literal["instance", "batch"]
GeneratorOutput = Literal["image", "residual"]
Conditioning = Literal["concat", "film"]


def normalization_layer(kind: Normalization, channels: int, condition_features: int = 0) -> nn.Module:
    """``instance`` (CycleGAN's and StarGAN's default) or ``batch`` (the official CycleGAN code's other option);
    with ``condition_features`` > 0, its :class:`FiLMNormalization` on a condition of that many features."""
    if condition_features:
        return FiLMNormalization(kind, channels, condition_features)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown normalization {kind!r}; valid: instance, batch")


class FiLMNormalization(nn.Module):
    """Conditional normalization (FiLM, Perez et al. 2018; conditional batch / instance norm of Dumoulin et al.
    2017): features [B, C, H, W] normalized without an affine of their own, then scaled by 1 + gamma(c) and shifted
    by beta(c), both linear in the condition vector c [B, K]. A scale that the condition can make negative lets a
    generator multiply its features by a target-dependent sign; label maps at the input can only shift them."""

    def __init__(self, kind: Normalization, channels: int, condition_features: int) -> None:
        super().__init__()
        if kind == "instance":
            self.norm: nn.Module = nn.InstanceNorm2d(channels)
        elif kind == "batch":
            self.norm = nn.BatchNorm2d(channels, affine=False)
        else:
            raise ValueError(f"unknown normalization {kind!r}; valid: instance, batch")
        # no bias: one one-hot block per group already sums to 1, so a bias would repeat the weights
        self.modulation = nn.Linear(condition_features, 2 * channels, bias=False)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.modulation(condition)[:, :, None, None].chunk(2, 1)  # [B, C, 1, 1] each
        return self.norm(x) * (1 + scale) + shift


def run_conditioned(layers: nn.Sequential, x: Tensor, condition: Tensor) -> Tensor:
    """``layers(x)`` with ``condition`` also passed to the layers that take one (FiLM, residual blocks)."""
    for layer in layers:
        x = layer(x, condition) if isinstance(layer, (FiLMNormalization, ResidualBlock)) else layer(x)
    return x


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), 3x3 convolutions with reflection padding; with ``condition_features`` > 0
    both norms are :class:`FiLMNormalization` and ``forward`` takes the condition vector."""

    def __init__(self, channels: int, normalization: Normalization = "instance", condition_features: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            normalization_layer(normalization, channels, condition_features),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            normalization_layer(normalization, channels, condition_features),
        )

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return x + (self.body(x) if condition is None else run_conditioned(self.body, x, condition))


def straight_through_clamp(images: Tensor) -> Tensor:
    """``images`` clamped to [-1, 1] in the forward pass, the identity in the backward pass: a clamped pixel still
    passes the gradient (a plain clamp would stop it for good once a pixel overshoots)."""
    return images + (images.clamp(-1, 1) - images).detach()


class ResnetGenerator(nn.Module):
    """Images [B, C, H, W] in [-1, 1] (plus ``condition_channels`` label maps) -> images [B, C_out, H, W] in [-1, 1].

    H and W must be divisible by 2 ** ``downsamplings`` (the paper: two stride-2 convolutions down, two up).
    ``conditioning`` says how a condition of ``condition_channels`` features enters: "concat" replicates it over
    the pixels as extra input channels (StarGAN's), "film" feeds it to every normalization layer instead
    (:class:`FiLMNormalization`).
    ``output`` "image" is the paper's tanh image; "residual" returns clamp(x + 2 tanh(net), -1, 1) with a
    straight-through clamp and the last convolution scaled by 0.1 (bias 0), so the generator starts within a few
    percent of its input x and learns a change of it (AttGAN / GANimation keep the input the same way; needs
    C_out = C).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        width: int = 32,
        blocks: int = 6,
        condition_channels: int = 0,
        downsamplings: int = 2,
        normalization: Normalization = "instance",
        output: GeneratorOutput = "image",
        conditioning: Conditioning = "concat",
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if output not in get_args(GeneratorOutput):
            raise ValueError(f"unknown generator output {output!r}; valid: {', '.join(get_args(GeneratorOutput))}")
        if output == "residual" and out_channels != channels:
            raise ValueError("a residual generator's output has its input's channels")
        if conditioning not in get_args(Conditioning):
            raise ValueError(f"unknown conditioning {conditioning!r}; valid: {', '.join(get_args(Conditioning))}")
        if conditioning == "film" and not condition_channels:
            raise ValueError("FiLM conditioning needs condition_channels")
        self.output = output
        self.conditioning = conditioning
        film = condition_channels if conditioning == "film" else 0  # the condition's features at every norm
        input_channels = channels + (condition_channels if conditioning == "concat" else 0)

        def norm(features: int) -> nn.Module:
            return normalization_layer(normalization, features, film)

        def down(inputs: int, outputs: int) -> list[nn.Module]:
            return [nn.Conv2d(inputs, outputs, 3, 2, 1), norm(outputs), nn.ReLU(True)]

        def up(inputs: int, outputs: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(inputs, outputs, 3, 2, 1, output_padding=1), norm(outputs), nn.ReLU(True)]

        self.network = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_channels, width, 7),
            norm(width),
            nn.ReLU(True),
            *(layer for i in range(downsamplings) for layer in down(width * 2**i, width * 2 ** (i + 1))),
            *(ResidualBlock(width * 2**downsamplings, normalization, film) for _ in range(blocks)),
            *(layer for i in reversed(range(downsamplings)) for layer in up(width * 2 ** (i + 1), width * 2**i)),
            nn.ReflectionPad2d(3),
            nn.Conv2d(width, out_channels, 7),
            nn.Tanh(),
        )
        if output == "residual":
            last = self.network[-2]  # the c7s1-3 convolution before tanh
            with torch.no_grad():
                last.weight.mul_(0.1)
                last.bias.zero_()

    def forward(self, images: Tensor, condition: Tensor | None = None) -> Tensor:
        if self.conditioning == "film":
            if condition is None:
                raise ValueError("a FiLM-conditioned generator needs its condition")
            out = run_conditioned(self.network, images, condition)
        else:
            inputs = images if condition is None else torch.cat([images, replicate(condition, *images.shape[-2:])], 1)
            out = self.network(inputs)
        return out if self.output == "image" else straight_through_clamp(images + 2 * out)


def batch_norms(network: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``network``."""
    return [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def batch_statistics_only(*networks: nn.Module) -> Iterator[None]:
    """Batch norm in training mode normalizes with each batch's statistics but leaves its running statistics (what
    evaluation normalizes with) as they are: for auxiliary passes whose inputs are not what the network translates."""
    layers = [m for network in networks for m in batch_norms(network) if m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False  # in training mode: batch statistics, no update
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


def call_on_each(network: nn.Module, *inputs: Tensor) -> list[Tensor]:
    """``[network(x) for x in inputs]``, computed in one call of the concatenated inputs when that is exact: one
    call on twice the images runs faster on a CPU than two. Networks with batch
    norm get separate calls, so each input keeps its own batch statistics, and only the first input updates the
    running statistics (the others are auxiliary passes); per-image norms need no such care."""
    if batch_norms(network):
        first = network(inputs[0])
        with batch_statistics_only(network):
            return [first, *(network(x) for x in inputs[1:])]
    return list(network(torch.cat(inputs)).split([len(x) for x in inputs]))


class PatchDiscriminator(nn.Module):
    """Images -> patch logits [B, 1, h, w] and, with ``classes`` > 0, class logits [B, classes] (else None).

    ``normalization`` is "instance" (CycleGAN) or "none" (StarGAN's critic: the gradient penalty is defined per
    sample, which batch statistics would break; the paper's D has no normalization). ``score_grid`` 0 gives one
    score per position of the H/4 x W/4 feature map (PatchGAN); n > 0 gives an n x n grid of scores, each read
    from an (H/4 - n + 1)-square window of it (StarGAN's D ends in a 2x2 grid whose scores see the whole image).
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        width: int = 64,
        classes: int = 0,
        normalization: str = "instance",
        score_grid: int = 0,
    ) -> None:
        super().__init__()

        def norm(features: int) -> nn.Module:
            return nn.InstanceNorm2d(features, affine=True) if normalization == "instance" else nn.Identity()

        self.trunk = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),  # H/2
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1),  # H/4
            norm(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 4 * width, 3, 1, 1),
            norm(4 * width),
            nn.LeakyReLU(0.2, True),
        )
        features = image_size // 4
        if not 0 <= score_grid <= features:
            raise ValueError(f"score_grid must be between 0 and {features}, got {score_grid}")
        self.patch_head = (
            nn.Conv2d(4 * width, 1, features - score_grid + 1) if score_grid else nn.Conv2d(4 * width, 1, 3, 1, 1)
        )
        # StarGAN's D_cls: a convolution whose kernel covers the whole remaining feature map
        self.class_head = nn.Conv2d(4 * width, classes, image_size // 4) if classes else None

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        features = self.trunk(images)
        classes = None if self.class_head is None else self.class_head(features).flatten(1)
        return self.patch_head(features), classes


class ImagePool(nn.Module):
    """A history of up to ``size`` generated images of ``item_shape``; ``size`` 0 passes images through.

    The history lives in buffers, so it is part of the model's state: a checkpoint keeps it and a resumed run
    shows its discriminators exactly the images an uninterrupted run would.
    """

    def __init__(self, size: int, item_shape: tuple[int, ...], generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.size = size
        self.generator = generator
        self.register_buffer("images", torch.zeros(size, *item_shape))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def query(self, images: Tensor) -> Tensor:
        """Images [B, ...] (detached) -> as many images, each the new one or, with probability 1/2 once the pool
        is full, a stored one (which the new one then replaces)."""
        if self.size == 0:
            return images
        chosen = []
        for image in images.detach():
            filled = int(self.filled)
            if filled < self.size:
                self.images[filled] = image
                self.filled += 1
                chosen.append(image)
            elif torch.rand((), generator=self.generator) < 0.5:
                slot = int(torch.randint(self.size, (), generator=self.generator))
                chosen.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                chosen.append(image)
        return torch.stack(chosen)


def replicate(condition: Tensor, height: int, width: int) -> Tensor:
    """Label vectors [B, K] -> constant label maps [B, K, H, W] (StarGAN's spatial replication)."""
    return condition[:, :, None, None].expand(-1, -1, height, width)


def one_hot_groups(values: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Value indices [B, G] of G groups with ``sizes`` -> concatenated one-hot vectors [B, sum(sizes)]."""
    return torch.cat([F.one_hot(values[:, g], size) for g, size in enumerate(sizes)], 1).float()


def group_logits(logits: Tensor, sizes: tuple[int, ...]) -> list[Tensor]:
    """Concatenated logits [B, sum(sizes)] -> one [B, size] logit block per group."""
    return list(logits.split(list(sizes), 1))
