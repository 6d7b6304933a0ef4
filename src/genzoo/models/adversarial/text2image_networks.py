"""The GAN-INT-CLS networks of text2image (Reed et al. 2016, section 4.1): the text compression, the conditional
generator and the matching-aware discriminator, scaled to 28x28 images."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Compression(nn.Module):
    """phi(t) -> the compressed embedding: fully connected + leaky ReLU (0.2), as in the paper."""

    def __init__(self, text_dim: int, compressed_dim: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(text_dim, compressed_dim), nn.LeakyReLU(0.2, True))

    def forward(self, embedding: Tensor) -> Tensor:
        return self.layer(embedding)


class ConditionalGenerator(nn.Module):
    """[z, compressed phi(t)] -> images [B, C, H, W] in [-1, 1] (DCGAN-style, two stride-2 up-convolutions, then
    with ``refinement`` > 0 a 3x3 convolution at full resolution)."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        text_dim: int,
        compressed: int,
        width: int,
        refinement: int = 0,
    ) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        self.compression = Compression(text_dim, compressed)
        last = (
            [nn.ConvTranspose2d(width, channels, 4, 2, 1)]
            if refinement == 0
            else [
                nn.ConvTranspose2d(width, refinement, 4, 2, 1, bias=False),
                nn.BatchNorm2d(refinement),
                nn.ReLU(True),
                nn.Conv2d(refinement, channels, 3, 1, 1),
            ]
        )
        self.network = nn.Sequential(
            nn.Linear(latent_dim + compressed, 2 * width * (height // 4) * (width_px // 4), bias=False),
            nn.BatchNorm1d(2 * width * (height // 4) * (width_px // 4)),
            nn.ReLU(True),
            nn.Unflatten(1, (2 * width, height // 4, width_px // 4)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            *last,
            nn.Tanh(),
        )

    def forward(self, latent: Tensor, embedding: Tensor) -> Tensor:
        return self.network(torch.cat([latent, self.compression(embedding)], 1))


class MatchingDiscriminator(nn.Module):
    """(images, phi(t)) -> one logit per pair [B]: three stride-2 convolutions to a ~4x4 map (as the paper's
    4x4), where the compressed text, spatially replicated, joins before a 1x1 and a final full-map convolution."""

    def __init__(
        self, image_shape: tuple[int, int, int], text_dim: int, compressed: int, width: int, projection: bool = False
    ) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        self.compression = Compression(text_dim, compressed)
        self.projection = nn.Linear(compressed, 4 * width, bias=False) if projection else None
        self.image_features = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, True),
        )
        final = [(side // 4 - 1) // 2 + 1 for side in (height, width_px)]  # H/4 -> ceil(H/8)
        self.joint = nn.Sequential(
            nn.Conv2d(4 * width + compressed, 4 * width, 1, bias=False),
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * width, 1, tuple(final)),
        )

    def forward(self, images: Tensor, embedding: Tensor) -> Tensor:
        return self.score(self.image_features(images), embedding)

    def score(self, features: Tensor, embedding: Tensor) -> Tensor:
        """One logit per pair from image features [B, 4 width, H/8, W/8] (``image_features``) and phi(t) [B, D]."""
        compressed = self.compression(embedding)
        text = compressed[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        logits = self.joint(torch.cat([features, text], 1)).flatten()
        if self.projection is not None:  # an explicit text x image product (Miyato & Koyama 2018), see above
            logits = logits + (self.projection(compressed) * features.sum((2, 3))).sum(1)
        return logits

    def pair_scores(self, features: Tensor, embedding: Tensor) -> Tensor:
        """The projection term for every image with every text of the batch [B images, B texts]."""
        return features.sum((2, 3)) @ self.projection(self.compression(embedding)).T
