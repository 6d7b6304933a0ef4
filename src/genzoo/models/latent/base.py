"""Latent variable models (VAE, AAE): the shared base class, image likelihoods and encoder/decoder networks.

A :class:`LatentModel` maps images to codes (``encode``) and codes to images (``decode``), and can draw codes from
its prior (``sample_prior``); the latent tools (``genzoo.latent_exploration``: interpolation, traversal, 2-D manifold)
need nothing else.

Pixel likelihoods p(x | z), chosen with the ``likelihood`` setting; each fixes the model's ``input_kind``:

- ``bernoulli`` (binary images): one logit per pixel;
- ``logistic`` (grey levels, input "levels"): the discretized logistic of PixelCNN++ (Salimans et al. 2017,
  eq. 2): the mass of a logistic(mu, s) over the bin [x - 1/(L-1), x + 1/(L-1)] of level x rescaled to [-1, 1],
  with the edge bins taking the tails, so log-likelihoods are of the discrete data;
- ``gaussian`` (dequantized grey levels in [0, 1)): N(x; mu(z), diag(sigma^2)) with sigma a learned per-pixel
  parameter; with a linear decoder this is probabilistic PCA / factor analysis, which the tests use because its
  marginal likelihood has a closed form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.data.transforms import InputKind
from genzoo.errors import GenzooError
from genzoo.models.base import GenerativeModel

LIKELIHOODS = ("bernoulli", "logistic", "gaussian")
ARCHITECTURES = ("mlp", "conv", "linear")


class LatentModel(GenerativeModel):
    """An encoder-decoder model with a prior over codes of size ``latent_dim``.

    A subclass defines ``Config`` (with the fields :meth:`build_networks` reads: ``latent``, ``likelihood``,
    ``levels``, ``architecture``, ``hidden``, ``layers``), calls :meth:`build_networks` in ``__init__`` (it sets
    ``latent_dim``, ``pixels``, ``encoder`` and ``decoder``; ``pixels`` fixes the instance's ``input_kind``), and
    defines ``encode(x)``, ``sample_prior(n)``, ``training_step`` and ``evaluate``. It gets ``decode``,
    ``reconstruct``, ``sample``, the reconstruction figure and ``genzoo interpolate``; it may override ``decode``
    and ``figures``.
    """

    family = "latent"
    latent_dim: int
    decoder: nn.Module
    pixels: PixelLikelihood

    def build_networks(self, outputs: int) -> None:
        """The pixel likelihood, encoder (x -> ``outputs`` numbers) and decoder that the config names."""
        config = self.config
        self.latent_dim = config.latent
        self.pixels = make_likelihood(config.likelihood, self.image_shape, config.levels)
        channels, height, width = self.image_shape
        self.encoder = make_encoder(config.architecture, self.image_shape, config.hidden, config.layers, outputs)
        decoder_shape = (self.pixels.params_per_pixel * channels, height, width)
        self.decoder = make_decoder(config.architecture, config.latent, config.hidden, config.layers, decoder_shape)

    @property
    def input_kind(self) -> InputKind:  # type: ignore[override]  (fixed per instance by the likelihood)
        return self.pixels.input_kind

    def encode(self, x: Tensor) -> Tensor:
        """The code of each image [B, Z] (the posterior mean for a stochastic encoder)."""
        raise NotImplementedError

    def sample_prior(self, n: int) -> Tensor:
        """``n`` codes [n, Z] from the prior."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Images [B, C, H, W] in the model's data range: the mean of p(x | z)."""
        return self.pixels.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int, pixels: str = "mean") -> Tensor:
        """``n`` images from z ~ p(z): the mean of p(x | z) (``pixels="mean"``, the usual display) or a draw."""
        return self.images_from_codes(self.sample_prior(n), pixels)

    def images_from_codes(self, z: Tensor, pixels: str = "mean") -> Tensor:
        params = self.decoder(z)
        if pixels == "mean":
            return self.pixels.mean(params)
        if pixels == "sampled":
            return self.pixels.sample(params)
        raise GenzooError(f"pixels must be 'mean' or 'sampled', got {pixels!r}")

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """Images the run directory keeps beside samples.png: test images above their reconstructions."""
        x = x[:32]
        return {"reconstructions.png": torch.cat([x.float(), self.reconstruct(x)])}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def check_levels(self, levels: int) -> None:
        """The discretized likelihood's bins must be the data's grey levels."""
        if self.input_kind == "levels" and levels != self.config.levels:
            raise GenzooError(
                f"the data has {levels} grey levels but the model has levels={self.config.levels}; "
                f"train it with --set levels={levels}"
            )


# ---- pixel likelihoods p(x | z) ---------------------------------------------------------------------------------


class PixelLikelihood(nn.Module):
    """Turns decoder outputs [B, P * C, H, W] (P parameters per pixel) into log p(x | z) and image means."""

    params_per_pixel: int
    input_kind: InputKind

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | params) summed over pixels; x [B, C, H, W], params [B, P*C, H, W] -> [B]."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor) -> Tensor:
        raise NotImplementedError


class BernoulliPixels(PixelLikelihood):
    params_per_pixel = 1
    input_kind = "binary"

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params))


class GaussianPixels(PixelLikelihood):
    """Density of dequantized pixels in [0, 1); a learned standard deviation per pixel."""

    params_per_pixel = 1
    input_kind = "dequantized"

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.full(image_shape, math.log(0.2)))

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        log_std = self.log_std.clamp(min=-7.0)
        z = (x - params) * torch.exp(-log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return params

    def sample(self, params: Tensor) -> Tensor:
        return params + torch.exp(self.log_std) * torch.randn_like(params)


class DiscretizedLogisticPixels(PixelLikelihood):
    """p(level | mu, s) for integer levels 0..L-1 (PixelCNN++ eq. 2, one logistic per pixel, no mixture)."""

    params_per_pixel = 2
    input_kind = "levels"

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_scale = params.chunk(2, dim=1)
        return mean, log_scale.clamp(min=-7.0)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        mean, log_scale = self._split(params)
        half_bin = 1.0 / (self.levels - 1)
        centred = x.to(mean.dtype) * (2 * half_bin) - 1.0 - mean  # level rescaled to [-1, 1], minus mu
        inverse_scale = torch.exp(-log_scale)
        upper, lower = inverse_scale * (centred + half_bin), inverse_scale * (centred - half_bin)
        log_cdf_upper = F.logsigmoid(upper)  # log P(v <= upper edge): the mass of the first bin
        log_survival_lower = -F.softplus(lower)  # log P(v > lower edge): the mass of the last bin
        # log(sigmoid(u) - sigmoid(l)) = log sigmoid(u) + log(1 - exp(l - u)) + log sigmoid(-l), stable for u > l
        log_interior = log_cdf_upper + torch.log(-torch.expm1(lower - upper).clamp(max=-1e-12)) + F.logsigmoid(-lower)
        log_mass = torch.where(
            x == 0, log_cdf_upper, torch.where(x == self.levels - 1, log_survival_lower, log_interior)
        )
        return log_mass.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        """The logistic's location, in level units (the median of the discretized distribution)."""
        mean, _ = self._split(params)
        return ((mean.clamp(-1, 1) + 1) * (self.levels - 1) / 2).round()

    def sample(self, params: Tensor) -> Tensor:
        mean, log_scale = self._split(params)
        u = torch.rand_like(mean).clamp(1e-5, 1 - 1e-5)
        value = mean + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        return ((value.clamp(-1, 1) + 1) * (self.levels - 1) / 2).round()


def make_likelihood(name: str, image_shape: tuple[int, int, int], levels: int) -> PixelLikelihood:
    if name == "bernoulli":
        return BernoulliPixels()
    if name == "gaussian":
        return GaussianPixels(image_shape)
    if name == "logistic":
        return DiscretizedLogisticPixels(levels)
    raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {name!r}")


def network_input(x: Tensor, input_kind: InputKind, levels: int) -> Tensor:
    """What the encoder reads: levels rescaled to [0, 1], anything else as is (float)."""
    if input_kind == "levels":
        return x.float() / (levels - 1)
    return x if x.is_floating_point() else x.float()


# ---- encoder and decoder networks -------------------------------------------------------------------------------


def mlp_encoder(image_shape: tuple[int, int, int], hidden: int, layers: int, out_features: int) -> nn.Module:
    """Flatten, ``layers`` tanh layers of width ``hidden`` (Burda et al. 2016's MNIST nets), linear output."""
    dims = math.prod(image_shape)
    blocks: list[nn.Module] = [nn.Flatten()]
    for i in range(layers):
        blocks += [nn.Linear(dims if i == 0 else hidden, hidden), nn.Tanh()]
    blocks.append(nn.Linear(hidden if layers else dims, out_features))
    return nn.Sequential(*blocks)


def mlp_decoder(latent_dim: int, hidden: int, layers: int, out_shape: tuple[int, int, int]) -> nn.Module:
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(latent_dim if i == 0 else hidden, hidden), nn.Tanh()]
    blocks += [nn.Linear(hidden if layers else latent_dim, math.prod(out_shape)), nn.Unflatten(1, out_shape)]
    return nn.Sequential(*blocks)


def _check_conv_shape(image_shape: tuple[int, int, int]) -> None:
    if image_shape[1] % 4 or image_shape[2] % 4:
        raise ValueError(f"the conv architecture needs height and width divisible by 4, got {image_shape[1:]}")


def conv_encoder(image_shape: tuple[int, int, int], hidden: int, out_features: int) -> nn.Module:
    """Two stride-2 4x4 convolutions (32, 64 channels), then a ``hidden``-unit layer: [B, C, H, W] -> [B, out]."""
    _check_conv_shape(image_shape)
    channels, height, width = image_shape
    return nn.Sequential(
        nn.Conv2d(channels, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )


def conv_decoder(latent_dim: int, hidden: int, out_shape: tuple[int, int, int]) -> nn.Module:
    """The mirror of :func:`conv_encoder` with transposed convolutions: [B, Z] -> [B, *out_shape]."""
    _check_conv_shape(out_shape)
    channels, height, width = out_shape
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 64 * (height // 4) * (width // 4)),
        nn.ReLU(),
        nn.Unflatten(1, (64, height // 4, width // 4)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, channels, 4, 2, 1),
    )


def make_encoder(
    architecture: str, image_shape: tuple[int, int, int], hidden: int, layers: int, out_features: int
) -> nn.Module:
    if architecture == "mlp":
        return mlp_encoder(image_shape, hidden, layers, out_features)
    if architecture == "conv":
        return conv_encoder(image_shape, hidden, out_features)
    if architecture == "linear":
        return mlp_encoder(image_shape, hidden, 0, out_features)
    raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")


def make_decoder(
    architecture: str, latent_dim: int, hidden: int, layers: int, out_shape: tuple[int, int, int]
) -> nn.Module:
    if architecture == "mlp":
        return mlp_decoder(latent_dim, hidden, layers, out_shape)
    if architecture == "conv":
        return conv_decoder(latent_dim, hidden, out_shape)
    if architecture == "linear":
        return mlp_decoder(latent_dim, hidden, 0, out_shape)
    raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
