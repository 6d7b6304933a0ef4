"""Puzzle-GAN (Lee, Yun, Choi, Yoo, Yang & Oh, "Unsupervised Holistic Image Generation from Key Local Patches",
ECCV 2018): from K local patches of an object, placed nowhere in particular, generate the whole image and a mask
of where those parts belong.

Networks, as in the paper: a part-encoding network E shared by the K patches (a siamese conv net, one
feature vector per patch), the K encodings concatenated; a mask-prediction network M decoding them into the mask
M_hat of the parts' locations; an image generator G decoding [encodings, z] whose every scale also receives M's
same-scale decoder features (the U-Net-like skip connections) and, at the output, M_hat itself; and a conditional
discriminator D on (image, mask) pairs.

The paper's three losses, in the forms used here, with x the real image and M its ground-truth mask
(:mod:`genzoo.data.patches`):
- spatial: per-pixel binary cross-entropy between M_hat and M;
- appearance: L1 between G's image and x inside M, i.e. the given parts must reappear at their true places,
  mean |G - x| over masked pixels;
- adversarial (``loss``, non-saturating by default, from :mod:`genzoo.losses`): D takes (x, M) as real and
  (G, M_hat) as fake, and also, as fakes, composites M * x_i + (1 - M) * x_j that paste one image's parts onto
  another image's background, so that locally real parts on a mismatched whole are rejected.
G, E and M minimize  w_adv(t) * adversarial + ``spatial_weight`` * spatial + ``appearance_weight`` * appearance.

Loss-weight schedule (genzoo's): w_adv(t) rises linearly from 0 to ``adversarial_weight`` over the first
``adversarial_warmup_images`` images, so the locations and the parts are learnt first and realism after; the other
weights are constant. Departures: patches are content-weighted random windows instead of detected key parts; the
networks are DCGAN-sized for 28x28/32x32 images.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.data.patches import KeyPatches, extract_key_patches, load_patch_images
from genzoo.data.transforms import scale_signed
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.models.adversarial.base import EVAL_CHUNK, AdversarialConfig, AdversarialModel, frozen, normal_init
from genzoo.models.adversarial.dcgan import base_and_doublings, dcgan_discriminator
from genzoo.models.base import Step
from genzoo.registry import models

BACKGROUND = -1.0  # black in the signed [-1, 1] range
SEPARATOR = 0.0  # mid grey between the cells of a puzzle strip
FIGURE_ROWS = 16


@dataclass
class PuzzleGANConfig(AdversarialConfig):
    latent_dim: int = 32
    patch_count: int = 3
    patch_size: int = 10
    part_features: int = 64
    width: int = 16  # channels of the last decoder stage (and D's first); doubled per coarser scale
    spatial_weight: float = 10.0
    appearance_weight: float = 10.0
    adversarial_weight: float = 1.0
    adversarial_warmup_images: int = 20000


class PartEncoder(nn.Module):
    """One patch [N, C, P, P] -> its encoding [N, part_features]; shared by all K patches."""

    def __init__(self, channels: int, features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 1, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(32, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(64, 64, 3, 1, 1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2, True),
            nn.AdaptiveAvgPool2d(2),  # keeps coarse layout inside the patch
            nn.Flatten(),
            nn.Linear(64 * 4, features),
        )

    def forward(self, patches: Tensor) -> Tensor:
        return self.layers(patches)


def decoder_widths(width: int, doublings: int) -> list[int]:
    """Channels at each scale, coarsest first: width * 2^(k-1), ..., width."""
    return [width * 2 ** (doublings - 1 - i) for i in range(doublings)]


def up(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(True),
    )


class MaskNetwork(nn.Module):
    """Concatenated encodings [B, K*F] -> mask logits [B, 1, H, W] and decoder features at every scale."""

    def __init__(self, code: int, base: int, widths: list[int]) -> None:
        super().__init__()
        self.base, self.first_width = base, widths[0]
        self.project = nn.Sequential(nn.Linear(code, widths[0] * base * base), nn.ReLU(True))
        self.stages = nn.ModuleList(up(a, b) for a, b in zip(widths, widths[1:]))
        self.to_mask = nn.ConvTranspose2d(widths[-1], 1, 4, 2, 1)

    def forward(self, code: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = self.project(code).view(len(code), self.first_width, self.base, self.base)
        features = [x]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return self.to_mask(x), features


class ImageGenerator(nn.Module):
    """[encodings, z] -> image [B, C, H, W] in [-1, 1]; each scale concatenates the mask network's features."""

    def __init__(self, code: int, channels: int, base: int, widths: list[int]) -> None:
        super().__init__()
        self.base, self.first_width = base, widths[0]
        self.project = nn.Sequential(nn.Linear(code, widths[0] * base * base), nn.ReLU(True))
        self.stages = nn.ModuleList(up(2 * a, b) for a, b in zip(widths, widths[1:]))
        self.last_up = up(2 * widths[-1], widths[-1])
        self.to_image = nn.Sequential(nn.Conv2d(widths[-1] + 1, channels, 3, 1, 1), nn.Tanh())

    def forward(self, code: Tensor, mask_features: list[Tensor], mask: Tensor) -> Tensor:
        x = self.project(code).view(len(code), self.first_width, self.base, self.base)
        for stage, skip in zip([*self.stages, self.last_up], mask_features):
            x = stage(torch.cat([x, skip], 1))
        return self.to_image(torch.cat([x, mask], 1))


@dataclass
class Puzzle:
    """What Puzzle-GAN makes of a set of patches."""

    images: Tensor  # [B, C, H, W] in [-1, 1]
    mask_logits: Tensor  # [B, 1, H, W]

    @property
    def masks(self) -> Tensor:
        return torch.sigmoid(self.mask_logits)


@models.register("puzzlegan")
class PuzzleGAN(AdversarialModel):
    """Whole images and part masks from K key patches; see the module docstring."""

    Config = PuzzleGANConfig
    default_batches = 2600  # the budget of its zoo entry and results row

    def __init__(self, config: PuzzleGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = self.image_shape
        if height != width:
            raise GenzooError(f"puzzlegan needs square images, got {height}x{width}")
        if not 2 <= config.patch_size < height:
            raise GenzooError(f"puzzlegan patch_size must be between 2 and {height - 1}, got {config.patch_size}")
        if config.patch_count < 1:
            raise GenzooError("puzzlegan patch_count must be at least 1")
        base, k = base_and_doublings(height)
        widths = decoder_widths(config.width, k)
        code = config.patch_count * config.part_features
        self.encoder = PartEncoder(channels, config.part_features)
        self.mask_network = MaskNetwork(code, base, widths)
        self.generator = ImageGenerator(code + config.latent_dim, channels, base, widths)
        self.discriminator = dcgan_discriminator((channels + 1, height, width), config.width)
        self.apply(normal_init)
        # real patch sets from the last training batch: what sample(n) completes when no patch files are given
        bank_shape = (64, config.patch_count, channels, config.patch_size, config.patch_size)
        self.register_buffer("example_patches", torch.full(bank_shape, BACKGROUND))

    def generator_parameters(self) -> list[dict[str, Any]]:
        networks = (self.encoder, self.mask_network, self.generator)
        return [{"params": list(chain.from_iterable(n.parameters() for n in networks))}]

    def complete(self, patches: Tensor, latent: Tensor) -> Puzzle:
        """Patches [B, K, C, P, P] in [-1, 1] and noise [B, latent_dim] -> images and mask logits."""
        batch, count = patches.shape[:2]
        encodings = self.encoder(patches.flatten(0, 1)).view(batch, count * self.config.part_features)
        mask_logits, mask_features = self.mask_network(encodings)
        images = self.generator(torch.cat([encodings, latent], 1), mask_features, torch.sigmoid(mask_logits))
        return Puzzle(images, mask_logits)

    def discriminate_pair(self, images: Tensor, masks: Tensor) -> Tensor:
        return self.discriminator(torch.cat([images, masks * 2 - 1], 1)).flatten()  # [B] logits

    def key_patches(self, images: Tensor, generator: torch.Generator | None = None) -> KeyPatches:
        c = self.config
        return extract_key_patches(images, c.patch_count, c.patch_size, BACKGROUND, generator)

    def adversarial_weight_at(self, images_seen: int) -> float:
        c = self.config
        if c.adversarial_warmup_images <= 0:
            return c.adversarial_weight
        return c.adversarial_weight * min(1.0, images_seen / c.adversarial_warmup_images)

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        c = self.config
        real = batch["x"]
        truth = self.key_patches(real)
        puzzle = self.complete(truth.patches, self.latent(len(real)))
        predicted_masks = puzzle.masks

        # parts of image i on the background of image i+1: real pieces, wrong whole
        other = real.roll(1, 0)
        composites = truth.mask * real + (1 - truth.mask) * other
        fake_scores = torch.cat(
            [
                self.discriminate_pair(puzzle.images.detach(), predicted_masks.detach()),
                self.discriminate_pair(composites, truth.mask),
            ]
        )
        d_loss = discriminator_loss(self.discriminate_pair(real, truth.mask), fake_scores, c.loss)
        step.optimize(d_loss, "discriminator")

        with frozen(self.discriminator):
            adversarial = generator_loss(self.discriminate_pair(puzzle.images, predicted_masks), c.loss)
        spatial = F.binary_cross_entropy_with_logits(puzzle.mask_logits, truth.mask)
        appearance = appearance_l1(puzzle.images, real, truth.mask)
        weight = self.adversarial_weight_at(step.batch_index * len(real))
        g_loss = weight * adversarial + c.spatial_weight * spatial + c.appearance_weight * appearance
        step.optimize(g_loss, "generator")

        kept = min(len(real), len(self.example_patches))
        self.example_patches[:kept] = truth.patches[:kept].detach()
        return {
            "discriminator_loss": d_loss.detach(),
            "generator_loss": adversarial.detach(),
            "spatial_loss": spatial.detach(),
            "appearance_loss": appearance.detach(),
        }

    def patches_for(self, n: int, patches: str | None) -> Tensor:
        """[n, K, C, P, P]: the given patch files for every sample, or the stored training patch sets in turn."""
        c = self.config
        if patches is None:
            index = torch.arange(n) % len(self.example_patches)
            return self.example_patches[index]
        paths = [p.strip() for p in patches.split(",") if p.strip()]
        if len(paths) != c.patch_count:
            raise GenzooError(f"this puzzlegan takes {c.patch_count} patch images, got {len(paths)}: {patches}")
        loaded = scale_signed(load_patch_images(paths, self.image_shape[0], c.patch_size), 256)
        return loaded.to(self._device()).expand(n, *loaded.shape)

    @torch.no_grad()
    def sample(self, n: int, patches: str | None = None, layout: str = "auto") -> Tensor:
        """Images completed from ``patches`` (comma-separated image files, one per part; default: patch sets kept
        from training). ``layout``: "images" gives [n, C, H, W]; "puzzle" gives one strip per sample, patches ->
        predicted mask -> image, [n, C, H, (K + 2) * (W + 2) - 2]; "auto" is "puzzle" when patch files are given."""
        if layout not in ("auto", "images", "puzzle"):
            raise GenzooError(f"--layout must be auto, images or puzzle, got {layout!r}")
        given = self.patches_for(n, patches)
        puzzle = self.complete(given, self.latent(n))
        if layout == "images" or (layout == "auto" and patches is None):
            return puzzle.images
        return self.strips([*self.patch_cells(given), puzzle.masks * 2 - 1, puzzle.images])

    def patch_cells(self, patches: Tensor) -> list[Tensor]:
        """Each patch centred on a background image, [B, C, H, W] per part, for display."""
        height, width = self.image_shape[1:]
        size = self.config.patch_size
        top, left = (height - size) // 2, (width - size) // 2
        padding = (left, width - size - left, top, height - size - top)
        return [F.pad(patches[:, k], padding, value=BACKGROUND) for k in range(patches.shape[1])]

    @staticmethod
    def strips(cells: list[Tensor]) -> Tensor:
        """Cells [B, 1 or C, H, W] side by side with 2-pixel grey separators, [B, C, H, cells * (W + 2) - 2]."""
        batch, channels, height, _ = cells[-1].shape
        separator = torch.full((batch, channels, height, 2), SEPARATOR, dtype=cells[-1].dtype, device=cells[-1].device)
        parts = [part for cell in cells for part in (cell.expand(-1, channels, -1, -1), separator)]
        return torch.cat(parts[:-1], -1)

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """puzzle.png: per test image, its K patches -> true mask -> predicted mask -> generated -> real."""
        real = x[:FIGURE_ROWS].to(self._device())
        truth = self.key_patches(real, torch.Generator().manual_seed(self.config.eval_seed))
        latent = self.latent(len(real), torch.Generator().manual_seed(self.config.eval_seed))
        puzzle = self.complete(truth.patches, latent)
        cells = [*self.patch_cells(truth.patches), truth.mask * 2 - 1, puzzle.masks * 2 - 1, puzzle.images, real]
        return {"puzzle.png": self.strips(cells)[:, None]}  # one strip per row

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """On ``eval_samples`` test images: key patches (seeded) -> completions; mask IoU (M_hat > 0.5 against the
        true patch squares), appearance L1 inside the true squares in [0, 1] pixel units, and the sample-quality
        suite of the completions against the whole test set."""
        from genzoo.metrics.sample_quality import sample_quality

        data = data or getattr(self, "run_config", {}).get("data")
        if data is None:
            raise GenzooError("puzzlegan metrics need the dataset name, to pick its feature net")
        c = self.config
        seed = torch.Generator().manual_seed(c.eval_seed)
        real = x[: c.eval_samples].float()
        intersection = union = appearance_sum = masked_pixels = 0.0
        generated = []
        for chunk in real.split(EVAL_CHUNK):
            chunk = chunk.to(self._device())
            truth = self.key_patches(chunk, seed)
            puzzle = self.complete(truth.patches, self.latent(len(chunk), seed))
            predicted = puzzle.masks > 0.5
            actual = truth.mask > 0.5
            intersection += float((predicted & actual).sum())
            union += float((predicted | actual).sum())
            appearance_sum += float(((puzzle.images - chunk).abs() * truth.mask).sum()) / 2  # [-1, 1] -> [0, 1]
            masked_pixels += float(truth.mask.sum()) * chunk.shape[1]
            generated.append(puzzle.images.cpu())
        images = (torch.cat(generated) + 1) / 2
        report = sample_quality(images, (x.float().cpu() + 1) / 2, data, c.inception_weights, seed=c.eval_seed)
        return {
            "mask_iou": intersection / max(union, 1.0),
            "appearance_l1": appearance_sum / max(masked_pixels, 1.0),
            "completed_images": len(real),
            **report,
        }


def appearance_l1(images: Tensor, real: Tensor, mask: Tensor) -> Tensor:
    """Mean |images - real| over the masked pixels (all channels); scalar."""
    return ((images - real).abs() * mask).sum() / (mask.sum() * images.shape[1]).clamp(min=1)
