"""Text-to-image GAN-INT-CLS (Reed et al., ICML 2016): images drawn from a sentence.

The text embedding phi(t) is compressed by a fully connected layer with leaky ReLU and concatenated with noise
z ~ N(0, I) in the generator; the discriminator concatenates the same compression, spatially replicated, with its
7x7 feature map before the final 1x1 and 7x7 convolutions. Training (Algorithm 1):

- CLS, the matching-aware discriminator: D sees three pairs — (real image, right text) as real, and both
  (real image, mismatched text) and (fake image, right text) as fake, each fake term weighted 1/2:
  L_D = log D(x, h) + (log(1 - D(x, h_mismatch)) + log(1 - D(G(z, h), h))) / 2  (maximized; here as BCE).
- INT: the generator also learns from interpolated embeddings beta h_1 + (1 - beta) h_2 (beta = 1/2) of two
  captions of the batch, for which no image exists, so only its adversarial term uses them.

Text encoder, and the choice made: a word-level bidirectional GRU, learned jointly in the same run with a joint
image-text embedding objective (Reed et al. 2016, "Learning deep representations of fine-grained visual
descriptions" use a structured loss between image and text encoders; here a symmetric softmax over batch
similarities in which every image and caption with the same label row is a positive). Word level, because the
captions are built from a closed vocabulary of whole words and synonyms (a character-level encoder would spend its
capacity on spelling); joint rather than pre-trained, because the objective converges within a few hundred
batches on this vocabulary and a single ``genzoo train`` stays one command. The GAN consumes the embedding
detached: as with Reed's fixed pre-trained encoder, no GAN loss moves the text encoder.

Captions reach the model without touching the engine: batches of ``mnist-attributes`` carry labels [class,
thickness, slant, colour, background], and the model writes a caption per image with templates and synonyms of
:mod:`genzoo.data.captions` from a generator seeded by the batch index (resume-exact). Evaluation writes captions
with the held-out templates only, and reads the generated images back: class by the base dataset's classifier,
attributes by the training-free measures of :mod:`genzoo.data.domains`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.data.captions import caption, encode, vocabulary
from genzoo.data.domains import GROUPS, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.metrics.sample_quality import frechet_distance_of_features
from genzoo.models.adversarial.base import frozen, normal_init
from genzoo.models.base import GenerativeModel, Step, TrainConfig
from genzoo.models.translation import classifier_for, classify
from genzoo.registry import models

CAPTION_SEED = 7919  # captions of training batch t come from generator seed CAPTION_SEED + t
EVAL_SEED = 0
EVAL_CHUNK = 500


@dataclass
class Text2ImageConfig(TrainConfig):
    classes: str = "mnist"  # caption words for the classes: "mnist" (digits) or "fashion-mnist" (garments)
    latent_dim: int = 64
    text_dim: int = 64  # phi(t)
    compressed_dim: int = 32  # the compressed embedding fed to G and D (Reed: 128 from 1024)
    word_dim: int = 64
    width: int = 64
    lr: float = 2e-4
    text_lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    interpolation_weight: float = 1.0  # weight of the INT generator term
    temperature: float = 0.1  # of the joint embedding softmax
    eval_images: int = 1000  # test images (from the start of the split) that evaluate uses


class TextEncoder(nn.Module):
    """Token ids [B, T] (0 = padding) -> unit-norm sentence embeddings [B, text_dim]: mean of BiGRU states."""

    def __init__(self, words: int, word_dim: int, text_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(words, word_dim, padding_idx=0)
        self.recurrent = nn.GRU(word_dim, word_dim, batch_first=True, bidirectional=True)
        self.output = nn.Linear(2 * word_dim, text_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        mask = (tokens > 0).float()[..., None]  # [B, T, 1]
        states, _ = self.recurrent(self.embedding(tokens))  # [B, T, 2 word_dim]
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.output(pooled), dim=1)


class ImageEncoder(nn.Module):
    """Images [B, C, H, W] in [-1, 1] -> unit-norm embeddings [B, text_dim]: the joint objective's image side."""

    def __init__(self, channels: int, width: int, text_dim: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(channels, width // 2, 3, 2, 1),
            nn.ReLU(True),
            nn.Conv2d(width // 2, width, 3, 2, 1),
            nn.ReLU(True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width, text_dim),
        )

    def forward(self, images: Tensor) -> Tensor:
        return F.normalize(self.network(images), dim=1)


class Compression(nn.Module):
    """phi(t) -> the compressed embedding: fully connected + leaky ReLU (0.2), as in the paper."""

    def __init__(self, text_dim: int, compressed_dim: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Linear(text_dim, compressed_dim), nn.LeakyReLU(0.2, True))

    def forward(self, embedding: Tensor) -> Tensor:
        return self.layer(embedding)


class ConditionalGenerator(nn.Module):
    """[z, compressed phi(t)] -> images [B, C, H, W] in [-1, 1] (DCGAN-style, two stride-2 up-convolutions)."""

    def __init__(
        self, image_shape: tuple[int, int, int], latent_dim: int, text_dim: int, compressed: int, width: int
    ) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        self.compression = Compression(text_dim, compressed)
        self.network = nn.Sequential(
            nn.Linear(latent_dim + compressed, 2 * width * (height // 4) * (width_px // 4), bias=False),
            nn.BatchNorm1d(2 * width * (height // 4) * (width_px // 4)),
            nn.ReLU(True),
            nn.Unflatten(1, (2 * width, height // 4, width_px // 4)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, latent: Tensor, embedding: Tensor) -> Tensor:
        return self.network(torch.cat([latent, self.compression(embedding)], 1))


class MatchingDiscriminator(nn.Module):
    """(images, phi(t)) -> one logit per pair [B]; the text joins the image features at 1/4 resolution."""

    def __init__(self, image_shape: tuple[int, int, int], text_dim: int, compressed: int, width: int) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        self.compression = Compression(text_dim, compressed)
        self.image_features = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
        )
        self.joint = nn.Sequential(
            nn.Conv2d(2 * width + compressed, 2 * width, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 1, (height // 4, width_px // 4)),
        )

    def forward(self, images: Tensor, embedding: Tensor) -> Tensor:
        features = self.image_features(images)  # [B, 2 width, H/4, W/4]
        text = self.compression(embedding)[:, :, None, None].expand(-1, -1, *features.shape[-2:])
        return self.joint(torch.cat([features, text], 1)).flatten()


def joint_embedding_loss(
    image_embeddings: Tensor, text_embeddings: Tensor, labels: Tensor, temperature: float
) -> Tensor:
    """Symmetric softmax over cosine similarities [B, B]; pairs with equal label rows are the positives."""
    similarity = image_embeddings @ text_embeddings.T / temperature
    positives = (labels[:, None, :] == labels[None, :, :]).all(-1).float()
    targets = positives / positives.sum(1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(similarity, 1)).sum(1).mean()
    text_to_image = -(targets.T * F.log_softmax(similarity.T, 1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


@models.register("text2image")
class Text2Image(GenerativeModel):
    """GAN-INT-CLS with a jointly learned word-level text encoder."""

    family = "adversarial"
    input_kind = "signed"
    default_data = "mnist-attributes"  # captions are written from its attribute labels
    Config = Text2ImageConfig

    def __init__(self, config: Text2ImageConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise GenzooError(f"text2image needs image sides divisible by 4, got {height}x{width}")
        self.words = vocabulary(config.classes)
        self.text_encoder = TextEncoder(len(self.words), config.word_dim, config.text_dim)
        self.image_encoder = ImageEncoder(channels, config.width, config.text_dim)
        self.generator = ConditionalGenerator(
            image_shape, config.latent_dim, config.text_dim, config.compressed_dim, config.width
        )
        self.discriminator = MatchingDiscriminator(image_shape, config.text_dim, config.compressed_dim, config.width)
        self.generator.apply(normal_init)
        self.discriminator.apply(normal_init)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        text_parameters = [*self.text_encoder.parameters(), *self.image_encoder.parameters()]
        return {
            "text": torch.optim.Adam(text_parameters, lr=c.text_lr),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=c.lr, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=c.lr, betas=betas),
        }

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def embed(self, sentences: list[str]) -> Tensor:
        """phi(t) for each sentence, [B, text_dim]."""
        return self.text_encoder(encode(sentences, self.words).to(self._device()))

    def latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.config.latent_dim, generator=generator).to(self._device())

    def check_labels(self, labels: Tensor | None) -> Tensor:
        if labels is None or labels.dim() != 2 or labels.shape[1] != 5:
            raise GenzooError("text2image captions its images from attribute labels; train it on mnist-attributes")
        return labels

    def discriminator_losses(self, real: Tensor, fake: Tensor, right: Tensor, mismatched: Tensor) -> dict[str, Tensor]:
        """The matching-aware loss over the three pairs (real, right), (real, mismatched), (fake, right)."""
        real_right = self.discriminator(real, right)
        real_wrong = self.discriminator(real, mismatched)
        fake_right = self.discriminator(fake.detach(), right)
        # log D(real, right) + [log(1 - D(real, wrong)) + log(1 - D(fake, right))] / 2, as a mean of BCE terms
        loss = (
            discriminator_loss(real_right, real_wrong, "non-saturating") / 2
            + discriminator_loss(real_right, fake_right, "non-saturating") / 2
        )
        return {
            "loss": loss,
            "d_real_right": torch.sigmoid(real_right).mean(),
            "d_real_mismatched": torch.sigmoid(real_wrong).mean(),
            "d_fake_right": torch.sigmoid(fake_right).mean(),
        }

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        c = self.config
        real = batch["x"]
        labels = self.check_labels(batch.get("y"))
        sentences = caption(labels.cpu(), c.classes, torch.Generator().manual_seed(CAPTION_SEED + step.batch_index))
        tokens = encode(sentences, self.words).to(real.device)

        text_embeddings = self.text_encoder(tokens)
        joint = joint_embedding_loss(self.image_encoder(real), text_embeddings, labels, c.temperature)
        step.optimize(joint, "text")

        right = text_embeddings.detach()
        mismatched = right.roll(1, 0)
        fake = self.generator(self.latent(len(real)), right)
        d_losses = self.discriminator_losses(real, fake, right, mismatched)
        d_loss = d_losses.pop("loss")
        step.optimize(d_loss, "discriminator")

        interpolated = F.normalize((right + right.roll(1, 0)) / 2, dim=1)  # beta = 1/2, kept on the unit sphere
        with frozen(self.discriminator):
            adversarial = generator_loss(self.discriminator(fake, right), "non-saturating")
            interpolation = generator_loss(
                self.discriminator(self.generator(self.latent(len(real)), interpolated), interpolated), "non-saturating"
            )
        step.optimize(adversarial + c.interpolation_weight * interpolation, "generator")
        return {
            "joint_embedding_loss": joint.detach(),
            "discriminator_loss": d_loss.detach(),
            **{k: v.detach() for k, v in d_losses.items()},
            "generator_loss": adversarial.detach(),
            "interpolation_loss": interpolation.detach(),
        }

    @torch.no_grad()
    def sample(self, n: int, text: str = "", interpolate: str = "") -> Tensor:
        """``text``: n images of that sentence; ``interpolate`` "first sentence | second sentence": n images
        along the line between their embeddings (one noise draw); neither: random labels captioned with the
        held-out templates."""
        if interpolate:
            ends = [part.strip() for part in interpolate.split("|")]
            if len(ends) != 2 or not all(ends):
                raise GenzooError('--interpolate takes two sentences separated by "|"')
            first, second = self.embed(ends)
            weights = torch.linspace(0, 1, n, device=first.device)[:, None]
            embeddings = F.normalize((1 - weights) * first + weights * second, dim=1)
            return self.generator(self.latent(1).expand(n, -1), embeddings)
        if text:
            return self.generator(self.latent(n), self.embed([text]).expand(n, -1))
        labels = self.random_labels(n, torch.Generator().manual_seed(EVAL_SEED))
        sentences = caption(labels, self.config.classes, torch.Generator().manual_seed(EVAL_SEED), held_out=True)
        return self.generator(self.latent(n), self.embed(sentences))

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """interpolations.png (INT): 4 rows of 8 images, each walking from one held-out caption to another."""
        generator = torch.Generator().manual_seed(EVAL_SEED)
        sentences = caption(self.random_labels(8, generator), self.config.classes, generator, held_out=True)
        rows = [self.sample(8, interpolate=f"{a} | {b}") for a, b in zip(sentences[::2], sentences[1::2])]
        return {"interpolations.png": torch.cat(rows)}

    @staticmethod
    def random_labels(n: int, generator: torch.Generator) -> Tensor:
        from genzoo.data.domains import random_attributes

        return torch.cat([torch.randint(10, (n, 1), generator=generator), random_attributes(n, generator)], 1)

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """Captions of the test labels written with held-out templates (and, for comparison, training ones):
        the share of generated images whose class (read by the classifier) and attributes (read by the measures)
        match the caption, per part and jointly; Fréchet distance to the real test images in the classifier's
        feature space."""
        labels = self.check_labels(labels)[: self.config.eval_images]
        x = x[: self.config.eval_images]
        classifier = classifier_for(data or getattr(self, "run_config", {}).get("data"))
        real_features = classify(classifier, (x + 1) / 2)[0] if classifier is not None else None
        report: dict[str, Any] = {"test_captions": len(labels)}
        for held_out, prefix in ((True, "held_out_"), (False, "train_phrasing_")):
            sentences = caption(
                labels, self.config.classes, torch.Generator().manual_seed(EVAL_SEED), held_out=held_out
            )
            noise = self.latent(len(labels), torch.Generator().manual_seed(EVAL_SEED))
            images = torch.cat(
                [
                    self.generator(z, self.embed(part))
                    for z, part in zip(
                        noise.split(EVAL_CHUNK),
                        [sentences[i : i + EVAL_CHUNK] for i in range(0, len(sentences), EVAL_CHUNK)],
                    )
                ]
            )
            unit = (images + 1) / 2
            hits = read_attributes(unit) == labels[:, 1:]  # [N, G]
            for g, group in enumerate(GROUPS):
                report[f"{prefix}{group}_match"] = float(hits[:, g].float().mean())
            report[f"{prefix}attributes_match"] = float(hits.all(1).float().mean())
            if classifier is not None:
                features, predicted = classify(classifier, unit)
                class_hits = predicted == labels[:, 0]
                report[f"{prefix}class_match"] = float(class_hits.float().mean())
                report[f"{prefix}caption_match"] = float((class_hits & hits.all(1)).float().mean())
                report[f"{prefix}frechet_distance"] = frechet_distance_of_features(real_features, features)
        if classifier is not None:
            report["classifier"] = classifier.name
        return report
