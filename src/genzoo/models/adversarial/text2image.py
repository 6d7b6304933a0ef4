"""Text-to-image GAN-INT-CLS (Reed et al., ICML 2016): images drawn from a sentence.

The text embedding phi(t) is compressed by a fully connected layer with leaky ReLU (128 dimensions, as in the
paper) and concatenated with noise z ~ N(0, I) (100 dimensions) in the generator; the discriminator convolves the
image down to a ~4x4 map (as the paper's 4x4), concatenates its own compression of phi(t), spatially replicated,
and ends with a 1x1 and a full-map convolution. Training (Algorithm 1):

- CLS, the matching-aware discriminator: D sees three pairs — (real image, right text) as real, and both
  (real image, mismatched text) and (fake image, right text) as fake, each fake term weighted 1/2:
  L_D = log D(x, h) + (log(1 - D(x, h_mismatch)) + log(1 - D(G(z, h), h))) / 2  (maximized; here as BCE).
- INT: the generator also learns from interpolated embeddings beta h_1 + (1 - beta) h_2 (beta = 1/2) of two
  captions of the batch, for which no image exists, so only its adversarial term uses them.

Text encoder, and the choice made: a word-level bidirectional GRU (mean of its states, unit norm), pre-trained in
the same run with a joint image-text embedding objective, then frozen. Reed et al. pre-train a char-CNN-RNN with
a structured joint embedding loss against an image encoder ("Learning deep representations of fine-grained
visual descriptions", 2016) and keep it fixed; here the objective is a symmetric softmax over batch cosine
similarities in which every image and caption with the same label row is a positive, run for the first
``text_pretrain_batches`` batches (1,000: well under a minute, since only the small encoders train; without the
phrasing noise below, 400 batches retrieved the right attribute row from a held-out phrasing for 76% of test
captions, 1,000 for 96%). Word level, because the
captions use a small vocabulary of whole words and synonyms (a character-level encoder would spend its capacity
and this budget on spelling); pre-trained in the run rather than shipped, so ``genzoo train`` stays one command
and works on a user's own captions. Words outside the closed caption vocabulary (users' captions) get ids by
feature hashing (``hashed_words`` buckets), so no word list has to be stored with the weights. Pre-training adds
phrasing noise so that an embedding depends on what a caption says, not on how: each caption's words are shuffled
(``word_order_noise``), and a second caption of each label row (other template and synonyms, also shuffled) is
pulled to the first by the same softmax between the two sets of texts (``phrasing_term``; Reed et al. reach the
same end by averaging the embeddings of several captions of an image). Measured after the 1,000 batches, on
held-out phrasings of 1,000 test captions: the nearest mean training-phrasing embedding is the right label row for
100% (97.6% without the noise), and the distance to it, relative to the gap to the nearest other row, fell from
0.55 to 0.34. With it the generator, which only ever sees training phrasings, lost far less on held-out ones.
Pre-training also drops each word with probability ``word_dropout`` (0.15; the word dropout of Iyyer et al.
2015). Without it a word that training captions use only inside one phrase ("the", only in "tilted to the left /
right") took a meaning of its own: held-out "the {class} is ..." captions landed 0.53 of that gap away from their
row (training phrasings 0.17-0.25, the other held-out ones 0.18-0.34), and the generator drew them worst; with it
0.31 (training 0.21-0.29; seed 1, after pre-training; benchmarks/RESULTS.md).

Departures, each for a measured reason (benchmarks/RESULTS.md, issue 6 text-to-image section):

- Scale of the condition. phi(t) is unit-norm, so with the DCGAN N(0, 0.02) initialization the compressed text
  entered G ~50x weaker than z and moved its output 1.3% as much as z did: G ignored the caption (caption match
  at chance after 1,500 batches). The condition is phi(t) * sqrt(text_dim) (unit variance per dimension, like z)
  and both compression layers keep PyTorch's default initialization; attributes then began to follow the text.
- Mismatched text with one factor changed (``mismatch="one-factor"``, attribute captions only). With the paper's
  random mismatch, 97% of wrong captions differ in colour, background, thickness or slant, so D learned to check
  those and never the digit: its score on real images with a caption naming the wrong class equalled its score
  with the right caption. A wrong caption here is the right one with exactly one of class / thickness / slant /
  colour / background changed, so every factor must be checked. A user's captions use the random mismatch.
- A projection term in D (``text_projection``; Miyato & Koyama 2018): logit += <W c(t), sum of D's final image
  features>, next to the paper's concatenation. The concatenation joins text and image only through a 1x1
  convolution, a weak way to ask "is this shape a three?"; with the projection's explicit text-image product the
  class match rose above chance within the budget (and the attributes learned ~2x faster).
- A batch-wide matching term in D and G (``matching_weight`` 1; the image-sentence contrastive loss of XMC-GAN,
  Zhang et al. 2021, here on D's projection term). D's projection scores every real image of the batch against
  every caption of the batch, and a softmax over those scores (both ways, equal label rows counting as
  positives, as in the text pre-training) asks it to rank each image's own caption first; G gets the same term
  for its images through the frozen D. With the matching-aware pairs alone D's check of the class stayed weak (a
  trained D ranked the right caption above a wrong-class one for 71% of test images, where the same D trained
  on that check alone reached 82% in 300 batches), and G's class followed it: held-out class match 72-77%
  against the class reader's 94.5%. With the term, at the same seed and budget, held-out caption match rose
  from 71.7% to 82.9% on seed 0 (class 86.3%, Fréchet 124 -> 85; D then ranks 94.5% of test images right) and
  from 49.5% to 61.1% on seed 1; weight 0.25 gave 74.9% and 2 gave 81.6% (seed 0). The paper's three pairs and
  their weights are unchanged; 0 restores its objective.
- Word dropout in the GAN's captions too (``condition_word_dropout`` 0.15, the right and the mismatched ones alike,
  so a caption's length tells D nothing). G only sees training phrasings, and whichever held-out template it drew
  badly moved with the seed (one at 54-64% while the encoder placed all three as close to their rows): G was
  sensitive to small shifts of its condition it never saw, which dropped words supply (in the spirit of StackGAN's
  conditioning augmentation, Zhang et al. 2017). Over seeds 0 / 1 / 2, held-out caption match 73.4 / 77.7 / 76.5%
  -> 78.8 / 79.3 / 82.4%, held-out attributes 89-91% -> 95-99%, at the cost of Fréchet distance (106-115 ->
  137-154) and 1-2 points on training phrasings.
- Networks scaled to 28x28 on CPU (two up-convolutions in G, three convolutions in D, width 64), and G ends in a
  3x3 convolution at full resolution (``refinement`` 32: the last up-convolution keeps 32 channels, with batch
  norm and ReLU, where DCGAN's draws the image itself). With the up-convolution drawing the image, G's class was
  the limit: fours came out as closed blobs read as nines (55-65% of fours kept), thin strokes on light
  backgrounds broke into dots, and held-out class match stayed at 81-83%. With the refinement, same seeds and
  budget: held-out caption match 78.8 / 79.3 / 82.4% -> 85.6 / 86.1 / 93.0% (seeds 0 / 1 / 2), class 81-83% ->
  87-93%, Fréchet distance 137-154 -> 73-108, for 1.24x the training time (1 thread, three runs side by side).
- Samples and evaluation come from an exponential moving average of G's weights (``ema_decay`` 0.999, warmed up
  as min(0.999, (1 + t) / (10 + t)) over the GAN batches t; Yazici et al. 2019), not from the last G: the GAN
  oscillates, and at the end of the 6,200-batch run the average matched 64.3% of held-out captions where the last
  G matched 54.5%. The average keeps its own batch-norm statistics (one forward pass per batch in training mode):
  with G's statistics averaged and no warm-up, the averaged weights drew images the readers could not recognise.
- The GAN's rates decay linearly to 0 over the last half of ``--max-steps`` (``decay_fraction``; CycleGAN's
  schedule) where Reed et al. halve them every 100 of 600 epochs: the same intent, fitted to a budget in batches.
- The GAN's rate is 3e-4, not the paper's 2e-4 (Adam, beta1 0.5): our budget is 4,000 GAN batches, not 600
  epochs. At 5,000 batches (1,000 of them text pre-training) held-out caption match was 89.1 / 84.6 / 93.6 /
  89.0% on seeds 0-3, where 2e-4 gave 81.1 / 77.2% (seeds 0 / 1) at 5,000 and 85.6-93.0% only at 6,200, which
  took 11-13 minutes on 2 cores; the 5,000 take 564-586 s of training.

Captions reach the model without touching the engine: batches of ``mnist-attributes`` carry labels [class,
thickness, slant, colour, background], and the model writes a caption per image with templates and synonyms of
:mod:`genzoo.data.captions` from a generator seeded by the batch index (resume-exact). A user's ``folder:PATH``
with a ``captions.txt`` carries each image's caption as a label row of byte codes, which the model decodes; it
keeps the first captions it saw in its weights so ``sample`` and the interpolation figure need no data files.
Evaluation writes captions for the test labels with the held-out templates (and the training ones, to compare)
and reads the generated images back: class by the base dataset's classifier, attributes by the training-free
measures of :mod:`genzoo.data.domains`, each reader's accuracy on the real test images reported as the ceiling.
On a user's folder, where no classifier exists, it reports caption retrieval in the model's own joint embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.data.captions import (
    CAPTION_BYTES,
    caption,
    decode_captions,
    encode,
    is_caption_codes,
    vocabulary,
)
from genzoo.data.domains import ATTRIBUTE_GROUPS, GROUPS, random_attributes, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.metrics.sample_quality import frechet_distance_of_features
from genzoo.models.adversarial.base import frozen, normal_init, update_weight_average, weight_average
from genzoo.models.base import GenerativeModel, Step, TrainConfig, adam
from genzoo.models.translation.base import classifier_for, classify
from genzoo.registry import models

CAPTION_SEED = 7919  # captions of training batch t come from generator seed CAPTION_SEED + t
MISMATCH_SEED = 104729  # mismatched captions of batch t come from generator seed MISMATCH_SEED + t
PHRASING_SEED = 15485863  # second phrasings (text-text term) of batch t: generator seed PHRASING_SEED + t
WORD_ORDER_SEED = 32452843  # word-order noise of batch t: generator seed WORD_ORDER_SEED + t
CONDITION_SEED = 49979687  # word dropout of the GAN's captions of batch t: generator seed CONDITION_SEED + t
EVAL_SEED = 0
EVAL_CHUNK = 500
MISMATCHES = ("one-factor", "random")
EXAMPLE_CAPTIONS = 64  # users' training captions kept in the weights for ``sample`` and the figures


@dataclass
class Text2ImageConfig(TrainConfig):
    classes: str = "mnist"  # caption words for the classes: "mnist" (digits) or "fashion-mnist" (garments)
    latent_dim: int = 100  # the paper's z
    text_dim: int = 64  # phi(t)
    compressed_dim: int = 128  # the compressed embedding fed to G and D (the paper's 128, from 1024)
    word_dim: int = 64
    hashed_words: int = 4096  # ids for words outside the closed caption vocabulary (users' captions)
    width: int = 64
    # > 0: G ends in a 3x3 convolution at full resolution from this many channels (see the docstring); 0: G's
    # last up-convolution draws the image
    refinement: int = added_later(32, before=0)
    lr: float = 3e-4  # the GAN's; the paper: 2e-4 (see the docstring)
    text_lr: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    text_pretrain_batches: int = 1000  # first batches train only the text encoder, which is then frozen
    mismatch: str = "one-factor"  # "one-factor" (attribute captions) or "random" (another caption of the batch)
    text_projection: bool = True  # D also scores <compressed text, pooled image features> (see the docstring)
    interpolation_weight: float = 1.0  # weight of the INT generator term
    # weight of the batch-wide matching term in D and G (see the docstring); 0 = the paper's objective only
    matching_weight: float = added_later(1.0, before=0.0)
    temperature: float = 0.1  # of the joint embedding softmax
    # pre-training also pulls two phrasings of one label row together (text-text)
    phrasing_term: bool = added_later(True, before=False)
    # pre-training shuffles each caption's words (see the docstring)
    word_order_noise: bool = added_later(True, before=False)
    # pre-training drops each word of a caption with this probability (see the docstring)
    word_dropout: float = added_later(0.15, before=0.0)
    # the GAN's captions (right and mismatched) drop each word with this probability (see the docstring)
    condition_word_dropout: float = added_later(0.15, before=0.0)
    # samples and evaluation use this average of G's weights; 0 = G itself
    ema_decay: float = added_later(0.999, before=0.0)
    # share of --max-steps over which the GAN's rates decay linearly to 0
    decay_fraction: float = added_later(0.5, before=0.0)
    channels_last: bool = True  # parameters and training images in the NHWC layout (faster; see Text2Image.precision)
    eval_images: int = 1000  # test images (from the start of the split) that evaluate uses

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mismatch not in MISMATCHES:
            raise ValueError(f"mismatch must be one of {', '.join(MISMATCHES)}, got {self.mismatch!r}")
        for name in ("text_pretrain_batches", "refinement", "matching_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.matching_weight > 0 and not self.text_projection:
            raise ValueError("matching_weight > 0 scores pairs with D's projection: set text_projection=true")
        for name in ("word_dropout", "condition_word_dropout", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


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


def joint_embedding_loss(
    image_embeddings: Tensor, text_embeddings: Tensor, labels: Tensor, temperature: float
) -> Tensor:
    """Symmetric softmax over cosine similarities [B, B]; pairs with equal label rows are the positives."""
    return matching_loss(image_embeddings @ text_embeddings.T / temperature, labels)


def matching_loss(similarity: Tensor, labels: Tensor) -> Tensor:
    """Symmetric softmax over a [B images, B texts] score matrix; pairs with equal label rows are the positives."""
    positives = (labels[:, None, :] == labels[None, :, :]).all(-1).float()
    targets = positives / positives.sum(1, keepdim=True)
    image_to_text = -(targets * F.log_softmax(similarity, 1)).sum(1).mean()
    text_to_image = -(targets.T * F.log_softmax(similarity.T, 1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


def shuffle_words(tokens: Tensor, generator: torch.Generator) -> Tensor:
    """Token ids [B, T] with each row's words (the non-padding ids) in a random order, padding still last."""
    keys = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    order = torch.where(tokens > 0, keys, 2.0).argsort(1)
    return tokens.gather(1, order)


def drop_words(tokens: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Token ids [B, T] with each word (non-padding id) removed with ``probability``, the rest kept in order and
    padded at the end; a row that would lose every word keeps them all."""
    drop = (torch.rand(tokens.shape, generator=generator) < probability).to(tokens.device)
    keep = (tokens > 0) & ~drop
    keep = torch.where(keep.any(1, keepdim=True), keep, tokens > 0)
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    order = torch.where(keep, positions, positions + tokens.shape[1]).argsort(1)
    kept = tokens.gather(1, order)
    return torch.where(positions < keep.sum(1, keepdim=True), kept, 0)


def one_factor_mismatch(labels: Tensor, generator: torch.Generator) -> Tensor:
    """Attribute label rows [B, 1 + groups] with exactly one column (uniform) changed to another value (uniform)."""
    sizes = torch.tensor([10, *(len(values) for values in ATTRIBUTE_GROUPS.values())])
    rows = torch.arange(len(labels))
    column = torch.randint(len(sizes), (len(labels),), generator=generator)
    shift = 1 + (torch.rand(len(labels), generator=generator) * (sizes[column] - 1)).long()  # 1 .. size - 1
    changed = labels.clone()
    changed[rows, column] = (labels[rows, column] + shift) % sizes[column]
    return changed


@models.register("text2image")
class Text2Image(GenerativeModel):
    """GAN-INT-CLS with a word-level text encoder pre-trained in the run by a joint image-text embedding."""

    family = "adversarial"
    input_kind = "signed"
    # measured (benchmarks/RESULTS.md): bf16 autocast 1.39x the fp32 rate of the GAN batches (744 vs 537 img/s,
    # idle, 2 threads) and after 6,200 batches the same result (held-out caption match 63.9% vs 64.3%), so the
    # budget took 9.3 idle minutes instead of ~11 (before the refinement convolution, which costs 1.27x a batch).
    # channels_last on top: 1.07-1.08x the bf16 rate (batches of the two layouts interleaved in one process)
    precision = "bf16-mixed"
    decayed_optimizers = ("discriminator", "generator")  # the GAN's rates; the text encoder's stays constant
    default_batches = 5000  # 1,000 text pre-training and 4,000 GAN batches: 564-586 s of training on 2 cores
    default_data = "mnist-attributes"  # captions are written from its attribute labels
    Config = Text2ImageConfig

    def __init__(self, config: Text2ImageConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise GenzooError(f"text2image needs image sides divisible by 4, got {height}x{width}")
        self.words = vocabulary(config.classes)
        self.text_encoder = TextEncoder(len(self.words) + config.hashed_words, config.word_dim, config.text_dim)
        self.image_encoder = ImageEncoder(channels, config.width, config.text_dim)
        self.generator = ConditionalGenerator(
            image_shape, config.latent_dim, config.text_dim, config.compressed_dim, config.width, config.refinement
        )
        self.discriminator = MatchingDiscriminator(
            image_shape, config.text_dim, config.compressed_dim, config.width, config.text_projection
        )
        self.generator.apply(normal_init)
        self.discriminator.apply(normal_init)
        for compression in (self.generator.compression, self.discriminator.compression):
            compression.layer[0].reset_parameters()  # see the docstring: the text must not start 50x below z
        self.generator_average = weight_average(self.generator, config.ema_decay)
        self.register_buffer("example_captions", torch.zeros(EXAMPLE_CAPTIONS, CAPTION_BYTES, dtype=torch.long))
        self.register_buffer("example_count", torch.zeros((), dtype=torch.long))
        self._lay_out_parameters()

    def training_only_modules(self) -> tuple[str, ...]:
        return ("discriminator",) if self.generator_average is None else ("discriminator", "generator")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        betas = (c.beta1, c.beta2)
        text_parameters = [*self.text_encoder.parameters(), *self.image_encoder.parameters()]
        return {
            "text": adam(text_parameters, c.text_lr),
            "discriminator": adam(self.discriminator.parameters(), c.lr, betas),
            "generator": adam(self.generator.parameters(), c.lr, betas),
        }

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def tokens(self, sentences: list[str]) -> Tensor:
        return encode(sentences, self.words, self.config.hashed_words).to(self._device())

    def condition(self, unit_embeddings: Tensor) -> Tensor:
        """Unit-norm phi(t) [B, text_dim] scaled to unit variance per dimension, the scale of the noise z."""
        return unit_embeddings * self.config.text_dim**0.5

    def embed(self, sentences: list[str]) -> Tensor:
        """The GAN's condition phi(t) for each sentence, [B, text_dim]."""
        return self.condition(self.text_encoder(self.tokens(sentences)))

    def embed_condition(self, tokens: Tensor, generator: torch.Generator) -> Tensor:
        """The GAN's training condition: phi(t) of the tokens with words dropped (``condition_word_dropout``)."""
        if self.config.condition_word_dropout > 0:
            tokens = drop_words(tokens, self.config.condition_word_dropout, generator)
        return self.condition(self.text_encoder(tokens))

    def latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.config.latent_dim, generator=generator).to(self._device())

    def sentences(self, labels: Tensor | None, batch_index: int) -> list[str]:
        """A caption per image: a user's caption, or one written from attribute labels (seeded by the batch)."""
        if is_caption_codes(labels):
            return decode_captions(labels.cpu())
        labels = self.check_labels(labels)
        return caption(labels.cpu(), self.config.classes, torch.Generator().manual_seed(CAPTION_SEED + batch_index))

    def check_labels(self, labels: Tensor | None) -> Tensor:
        if is_caption_codes(labels):
            return labels
        if labels is None or labels.dim() != 2 or labels.shape[1] != 5:
            raise GenzooError(
                "text2image needs captions: train it on mnist-attributes / fashion-attributes (captions written "
                "from attribute labels) or on folder:PATH with a captions.txt"
            )
        return labels

    def mismatched(self, labels: Tensor, right: Tensor, batch_index: int) -> Tensor:
        """phi of a wrong caption per image: the same attributes with one factor changed (``one-factor``, attribute
        labels only), else the next caption of the batch (the paper's random mismatch)."""
        if self.config.mismatch == "one-factor" and not is_caption_codes(labels):
            generator = torch.Generator().manual_seed(MISMATCH_SEED + batch_index)
            wrong = caption(one_factor_mismatch(labels.cpu(), generator), self.config.classes, generator)
            with torch.no_grad():
                return self.embed_condition(self.tokens(wrong), generator)
        return right.roll(1, 0)

    def remember_captions(self, labels: Tensor) -> None:
        """Keep the first users' captions seen in training, so ``sample`` needs no data files."""
        count = int(self.example_count)
        if is_caption_codes(labels) and count < EXAMPLE_CAPTIONS:
            taken = labels[: EXAMPLE_CAPTIONS - count]
            self.example_captions[count : count + len(taken)] = taken.to(self.example_captions)
            self.example_count += len(taken)

    def discriminator_losses(
        self, real: Tensor, fake: Tensor, right: Tensor, mismatched: Tensor, labels: Tensor
    ) -> dict[str, Tensor]:
        """The matching-aware loss over the three pairs (real, right), (real, mismatched), (fake, right), plus the
        matching term over every (real image, caption) pair of the batch when ``matching_weight`` > 0."""
        d = self.discriminator
        real_features = d.image_features(real)
        real_right = d.score(real_features, right)
        real_wrong = d.score(real_features, mismatched)
        fake_right = d(fake.detach(), right)
        # log D(real, right) + [log(1 - D(real, wrong)) + log(1 - D(fake, right))] / 2, as a mean of BCE terms
        loss = (
            discriminator_loss(real_right, real_wrong, "non-saturating") / 2
            + discriminator_loss(real_right, fake_right, "non-saturating") / 2
        )
        logs = {
            "d_real_right": torch.sigmoid(real_right).mean(),
            "d_real_mismatched": torch.sigmoid(real_wrong).mean(),
            "d_fake_right": torch.sigmoid(fake_right).mean(),
        }
        if self.config.matching_weight > 0:
            matching = matching_loss(d.pair_scores(real_features, right), labels)
            loss = loss + self.config.matching_weight * matching
            logs["d_matching_loss"] = matching
        return {"loss": loss, **logs}

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        c = self.config
        real = self._layout(batch["x"])
        labels = self.check_labels(batch.get("y"))
        self.remember_captions(labels)
        tokens = self.tokens(self.sentences(labels, step.batch_index))
        if step.batch_index < c.text_pretrain_batches:
            return self.pretrain_text(real, labels, tokens, step)

        with torch.no_grad():
            right = self.embed_condition(tokens, torch.Generator().manual_seed(CONDITION_SEED + step.batch_index))
        mismatched = self.mismatched(labels, right, step.batch_index)
        latent = self.latent(len(real))
        fake = self.generator(latent, right)
        d_losses = self.discriminator_losses(real, fake, right, mismatched, labels)
        d_loss = d_losses.pop("loss")
        step.optimize(d_loss, "discriminator")

        # beta = 1/2, brought back to the sphere (radius sqrt(text_dim)) that the encoder's embeddings lie on
        interpolated = self.condition(F.normalize(right + right.roll(1, 0), dim=1))
        logs = {}
        with frozen(self.discriminator):
            fake_features = self.discriminator.image_features(fake)
            adversarial = generator_loss(self.discriminator.score(fake_features, right), "non-saturating")
            interpolation = generator_loss(
                self.discriminator(self.generator(self.latent(len(real)), interpolated), interpolated), "non-saturating"
            )
            g_loss = adversarial + c.interpolation_weight * interpolation
            if c.matching_weight > 0:
                matching = matching_loss(self.discriminator.pair_scores(fake_features, right), labels)
                g_loss = g_loss + c.matching_weight * matching
                logs["g_matching_loss"] = matching.detach()
        step.optimize(g_loss, "generator")
        self.update_average(latent, right, step.batch_index - c.text_pretrain_batches)
        return {
            "discriminator_loss": d_loss.detach(),
            **{k: v.detach() for k, v in d_losses.items()},
            "generator_loss": adversarial.detach(),
            "interpolation_loss": interpolation.detach(),
            **logs,
        }

    def pretrain_text(self, real: Tensor, labels: Tensor, tokens: Tensor, step: Step) -> dict[str, Tensor]:
        """Reed et al. pre-train the text encoder, then keep it fixed: the GAN starts on a settled embedding.
        The joint image-text objective, on captions with their words shuffled (``word_order_noise``), plus a
        text-text one between two phrasings of each label row (``phrasing_term``, attribute captions only)."""
        c = self.config
        tokens = self.phrasing_noise(tokens, torch.Generator().manual_seed(WORD_ORDER_SEED + step.batch_index))
        texts = self.text_encoder(tokens)
        joint = joint_embedding_loss(self.image_encoder(real), texts, labels, c.temperature)
        logs = {"joint_embedding_loss": joint.detach()}
        loss = joint
        if c.phrasing_term and not is_caption_codes(labels):
            generator = torch.Generator().manual_seed(PHRASING_SEED + step.batch_index)
            others = self.phrasing_noise(self.tokens(caption(labels.cpu(), c.classes, generator)), generator)
            phrasing = joint_embedding_loss(self.text_encoder(others), texts, labels, c.temperature)
            logs["phrasing_loss"] = phrasing.detach()
            loss = loss + phrasing
        step.optimize(loss, "text")
        return logs

    def phrasing_noise(self, tokens: Tensor, generator: torch.Generator) -> Tensor:
        """Pre-training's captions with words dropped (``word_dropout``) and shuffled (``word_order_noise``)."""
        if self.config.word_dropout > 0:
            tokens = drop_words(tokens, self.config.word_dropout, generator)
        if self.config.word_order_noise:
            tokens = shuffle_words(tokens, generator)
        return tokens

    @torch.no_grad()
    def update_average(self, latent: Tensor, condition: Tensor, updates: int) -> None:
        """The warmed-up weight average of G (:func:`update_weight_average`) after ``updates`` GAN batches; its
        batch-norm statistics are its own, from a forward pass on this batch's (z, phi(t)) in training mode (G's
        statistics do not fit the averaged weights)."""
        if self.generator_average is None:
            return
        update_weight_average(self.generator_average, self.generator, self.config.ema_decay, updates)
        self.generator_average.train()(latent, condition)

    @property
    def sampling_generator(self) -> ConditionalGenerator:
        """The weight average of G when ``ema_decay`` > 0, else G."""
        return self.generator if self.generator_average is None else self.generator_average

    def example_sentences(self, n: int, seed: int = EVAL_SEED) -> list[str]:
        """n captions to draw when none is given: the stored users' captions, else random attribute labels
        captioned with the held-out templates."""
        count = int(self.example_count)
        if count:
            return decode_captions(self.example_captions[torch.arange(n) % count].cpu())
        generator = torch.Generator().manual_seed(seed)
        return caption(self.random_labels(n, generator), self.config.classes, generator, held_out=True)

    @torch.no_grad()
    def sample(self, n: int, text: str = "", interpolate: str = "") -> Tensor:
        """``text``: n images of that sentence; ``interpolate`` "first sentence | second sentence": n images
        along the line between their embeddings (one noise draw); neither: n images of :meth:`example_sentences`."""
        if interpolate:
            ends = [part.strip() for part in interpolate.split("|")]
            if len(ends) != 2 or not all(ends):
                raise GenzooError('--interpolate takes two sentences separated by "|"')
            first, second = self.embed(ends)
            weights = torch.linspace(0, 1, n, device=first.device)[:, None]
            embeddings = self.condition(F.normalize((1 - weights) * first + weights * second, dim=1))
            return self.sampling_generator(self.latent(1).expand(n, -1), embeddings)
        if text:
            return self.sampling_generator(self.latent(n), self.embed([text]).expand(n, -1))
        return self.sampling_generator(self.latent(n), self.embed(self.example_sentences(n)))

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """interpolations.png (INT): 4 rows of 8 images, each walking from one caption to another."""
        sentences = self.example_sentences(8)
        rows = [self.sample(8, interpolate=f"{a} | {b}") for a, b in zip(sentences[::2], sentences[1::2])]
        return {"interpolations.png": torch.stack(rows)}

    @staticmethod
    def random_labels(n: int, generator: torch.Generator) -> Tensor:
        return torch.cat([torch.randint(10, (n, 1), generator=generator), random_attributes(n, generator)], 1)

    def generate(self, sentences: list[str]) -> Tensor:
        """One image per sentence [N, C, H, W] in [-1, 1], noise from the evaluation seed, in chunks."""
        noise = self.latent(len(sentences), torch.Generator().manual_seed(EVAL_SEED))
        chunks = [sentences[i : i + EVAL_CHUNK] for i in range(0, len(sentences), EVAL_CHUNK)]
        generator = self.sampling_generator
        return torch.cat([generator(z, self.embed(part)) for z, part in zip(noise.split(EVAL_CHUNK), chunks)])

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """Attribute captions: the test labels captioned with held-out templates (and, for comparison, training
        ones); the share of generated images whose class (read by the classifier) and attributes (read by the
        measures) match the caption, per part and jointly; Fréchet distance to the real test images in the
        classifier's feature space; the classifier's accuracy on the real test images (the ceiling).
        A user's captions: see :meth:`evaluate_user_captions`."""
        labels = self.check_labels(labels)[: self.config.eval_images]
        x = x[: self.config.eval_images]
        if is_caption_codes(labels):
            return self.evaluate_user_captions(x, decode_captions(labels))
        classifier = classifier_for(data or getattr(self, "run_config", {}).get("data"))
        report: dict[str, Any] = {"test_captions": len(labels)}
        if classifier is not None:
            real_features, real_classes = classify(classifier, (x + 1) / 2)
            report["classifier_accuracy_on_real"] = float((real_classes == labels[:, 0]).float().mean())
        report["attribute_reader_accuracy_on_real"] = float(
            (read_attributes((x + 1) / 2) == labels[:, 1:]).all(1).float().mean()
        )
        for held_out, prefix in ((True, "held_out_"), (False, "train_phrasing_")):
            sentences = caption(
                labels, self.config.classes, torch.Generator().manual_seed(EVAL_SEED), held_out=held_out
            )
            unit = (self.generate(sentences) + 1) / 2
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

    def evaluate_user_captions(self, x: Tensor, sentences: list[str]) -> dict[str, Any]:
        """With no classifier for a user's images, the model's own joint embedding judges the match: the share of
        images generated from the test captions whose nearest test caption (cosine, image encoder vs text
        encoder) is the one they were drawn from (an identical caption counts), next to the chance level and to
        the same retrieval for the real test images."""
        texts = self.text_encoder(self.tokens(sentences))  # [N, text_dim], unit norm

        def retrieval(images: Tensor) -> float:
            nearest = (self.image_encoder(images) @ texts.T).argmax(1)
            return sum(sentences[int(j)] == s for j, s in zip(nearest, sentences)) / len(sentences)

        return {
            "test_captions": len(sentences),
            "caption_retrieval": retrieval(self.generate(sentences)),
            "caption_retrieval_real_images": retrieval(x),
            "caption_retrieval_chance": 1 / len(set(sentences)),
        }
