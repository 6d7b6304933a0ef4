"""Text-to-image GAN-INT-CLS: Reed, Akata, Yan, Logeswaran, Schiele & Lee, "Generative Adversarial Text to Image
Synthesis", ICML 2016.

Objective (Algorithm 1). With h = phi(t) the embedding of a caption t, h^ that of a mismatched caption, x^ = G(z, h)
and h_int = beta h_1 + (1 - beta) h_2 (beta = 1/2) between two captions of the batch, D maximizes (CLS)

    L_D = log D(x, h) + ( log(1 - D(x, h^)) + log(1 - D(x^, h)) ) / 2

and G maximizes (non-saturating, INT)

    L_G = log D(x^, h) + log D(G(z, h_int), h_int).

Architecture: phi(t) is compressed by a fully connected layer with leaky ReLU (128 dimensions) and concatenated
with z ~ N(0, I) (100 dimensions) in G, a DCGAN-style network (two stride-2 up-convolutions); D convolves the
image down to a ~4x4 map, concatenates its own compression of phi(t) replicated over it, and ends with a 1x1 and a
full-map convolution (:mod:`genzoo.models.adversarial.text2image_networks`). The text encoder
(:mod:`genzoo.models.adversarial.text_encoder`) is pre-trained, then frozen, as in the paper.

Captions reach the model without touching the engine: batches of ``mnist-attributes`` carry labels [class,
thickness, slant, colour, background] that the model captions with :mod:`genzoo.data.captions` (seeded by the batch
index, so resume is exact); a ``folder:PATH`` with a ``captions.txt`` carries each image's caption as byte codes.
Evaluation captions the test labels with held-out templates and frames and reads the images back (class by the
dataset's classifier, attributes by :func:`genzoo.data.domains.read_attributes`); on a user's folder it reports
caption retrieval in the model's own joint embedding. ``sample`` refuses words the model never trained on by name.

Departures (each measured: benchmarks/log/text2image.md):
- With ``captions="partial"`` (opt-in: it does not yet meet its targets) captions name the class and any subset of the
  four attributes ("a red seven", "7"), as people write them; an unnamed part is left to the noise. An image then
  matches every caption whose named parts it shows: the joint embedding, D's matching term and the mismatched captions
  (one named part changed) follow that, and pairs no one can judge (a generated image against a caption naming a part
  its own caption left open) are left out of the matching softmax. Reed et al.'s captions are free text; "full" names
  all five, as before. With them G needs MSGAN's mode-seeking term (``mode_seeking_weight=1``; Mao et al. 2019),
  without which it drew one value of each open part per caption. Log: "Partial captions".
- Text encoder: a word-level bidirectional GRU pre-trained in the run (first ``text_pretrain_batches``) by a
  symmetric softmax over image-caption cosine similarities, not a separately trained char-CNN-RNN; its captions
  get phrasing noise (``word_order_noise``, ``word_dropout``, ``phrasing_term``). Log: "Text encoder".
- The condition enters at the scale of z: phi(t) x sqrt(text_dim), compression layers at PyTorch's default
  initialization (at DCGAN's, G ignored the caption). Log: "Scale of the condition".
- A mismatched caption changes exactly one factor (``mismatch="one-factor"``), so D checks every factor, the
  class included. Log: "One-factor mismatch".
- D adds a projection term <W c(t), pooled image features> (``text_projection``; Miyato & Koyama 2018) and a
  batch-wide image-caption matching term in D and G (``matching_weight``; XMC-GAN). Log: "Projection and matching".
- The GAN's captions drop words too (``condition_word_dropout``). Log: "Condition word dropout".
- G ends in a 3x3 convolution at full resolution (``refinement``). Log: "Refinement convolution".
- Samples and evaluation use a warmed-up weight average of G (``ema_decay``). Log: "Weight average".
- The GAN's rate is 3e-4 (the paper: 2e-4), decaying linearly to 0 over the last ``decay_fraction`` of the run
  (the paper halves it every 100 epochs). Log: "Learning rate".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genzoo.config import added_later
from genzoo.data.captions import (
    ATTRIBUTE_WORDS,
    CAPTION_BYTES,
    CAPTION_STYLES,
    CLASS_WORDS,
    UNNAMED,
    caption,
    decode_captions,
    encode,
    frame_words,
    is_caption_codes,
    name_parts,
    partial_caption,
    tokenize,
    vocabulary,
)
from genzoo.data.domains import ATTRIBUTE_GROUPS, GROUPS, random_attributes, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.metrics.sample_quality import frechet_distance_of_features
from genzoo.models.adversarial.base import frozen, normal_init, update_weight_average, weight_average
from genzoo.models.adversarial.text2image_networks import ConditionalGenerator, MatchingDiscriminator
from genzoo.models.adversarial.text_encoder import (
    ImageEncoder,
    TextEncoder,
    drop_words,
    joint_embedding_loss,
    matching_loss,
    shuffle_words,
)
from genzoo.models.base import GenerativeModel, Step, TrainConfig, adam
from genzoo.models.translation.base import classifier_for, classify
from genzoo.registry import models

# Seed offsets of the per-batch random streams: stream s of training batch t draws from seed STREAMS[s] + t, so
# a resumed run redraws the same captions. The offsets are far apart (primes past 7,900, 100,000 and millions), so
# two streams never share a seed in a run of fewer than ~96,000 batches; stored runs depend on their values.
STREAMS = {
    "captions": 7919,
    "mismatched captions": 104729,
    "second phrasings": 15485863,  # the text-text pre-training term
    "word order": 32452843,  # pre-training's shuffled words
    "condition word dropout": 49979687,  # the GAN's captions
    "named parts": 67867967,  # which parts a partial caption names
}
EVAL_SEED = 0
EVAL_CHUNK = 500
MISMATCHES = ("one-factor", "random")
EXAMPLE_CAPTIONS = 64  # users' training captions kept in the weights for ``sample`` and the figures
WORD_BYTES = 32  # a recorded word of a user's captions keeps its first 32 UTF-8 bytes
SPREAD_CAPTIONS, SPREAD_SAMPLES = 100, 16  # the spread of unnamed parts: captions, and noise draws of each
EXAMPLES = ("a thin blue three", "a red seven", "7", "the seven is thick and leaning left")


def batch_generator(stream: str, batch_index: int) -> torch.Generator:
    """The generator of random stream ``stream`` (a key of ``STREAMS``) for training batch ``batch_index``."""
    return torch.Generator().manual_seed(STREAMS[stream] + batch_index)


@dataclass
class Text2ImageConfig(TrainConfig):
    classes: str = "mnist"  # caption words for the classes: "mnist" (digits) or "fashion-mnist" (garments)
    latent_dim: int = 100  # the paper's z
    text_dim: int = 64  # phi(t)
    compressed_dim: int = 128  # the compressed embedding fed to G and D (the paper's 128, from 1024)
    word_dim: int = 64
    hashed_words: int = 4096  # ids for words outside the closed caption vocabulary (users' captions)
    # attribute captions name any subset of the parts, the class always ("partial"), or all five ("full", the
    # templates alone; see the docstring). "full" stays the default until partial captions reach their targets
    # (benchmarks/log/text2image.md, "Partial captions")
    captions: str = "full"
    # distinct words of users' captions kept with the weights, so ``sample`` can name the words it never trained on
    recorded_words: int = added_later(4096, before=0)
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
    # weight of MSGAN's mode-seeking term in G's loss (see the docstring); 0 = none, the default with full captions
    mode_seeking_weight: float = 0.0
    # samples and evaluation use this average of G's weights; 0 = G itself
    ema_decay: float = added_later(0.999, before=0.0)
    # share of --max-steps over which the GAN's rates decay linearly to 0
    decay_fraction: float = added_later(0.5, before=0.0)
    channels_last: bool = True  # parameters and training images in the NHWC layout (faster; see Text2Image.precision)
    eval_images: int = 1000  # test images (from the start of the split) that evaluate uses

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.captions not in CAPTION_STYLES:
            raise ValueError(f"captions must be one of {', '.join(CAPTION_STYLES)}, got {self.captions!r}")
        if self.recorded_words < 0:
            raise ValueError(f"recorded_words must be at least 0, got {self.recorded_words}")
        if self.mismatch not in MISMATCHES:
            raise ValueError(f"mismatch must be one of {', '.join(MISMATCHES)}, got {self.mismatch!r}")
        for name in ("text_pretrain_batches", "refinement", "matching_weight", "mode_seeking_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.matching_weight > 0 and not self.text_projection:
            raise ValueError("matching_weight > 0 scores pairs with D's projection: set text_projection=true")
        for name in ("word_dropout", "condition_word_dropout", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def one_factor_mismatch(labels: Tensor, generator: torch.Generator) -> Tensor:
    """Attribute label rows [B, 1 + groups] with exactly one named column (uniform; ``UNNAMED`` marks the parts a
    caption leaves open) changed to another value (uniform)."""
    sizes = torch.tensor([10, *(len(values) for values in ATTRIBUTE_GROUPS.values())])
    rows = torch.arange(len(labels))
    named = labels != UNNAMED
    if named.all():
        column = torch.randint(len(sizes), (len(labels),), generator=generator)
    else:
        column = torch.multinomial(named.float(), 1, generator=generator)[:, 0]
    shift = 1 + (torch.rand(len(labels), generator=generator) * (sizes[column] - 1)).long()  # 1 .. size - 1
    changed = labels.clone()
    changed[rows, column] = (labels[rows, column] + shift) % sizes[column]
    return changed


@models.register("text2image")
class Text2Image(GenerativeModel):
    """GAN-INT-CLS with a word-level text encoder pre-trained in the run by a joint image-text embedding."""

    family = "adversarial"
    input_kind = "signed"
    precision = "bf16-mixed"  # faster at the same result (benchmarks/log/text2image.md, "bf16 and channels_last")
    decayed_optimizers = ("discriminator", "generator")  # the GAN's rates; the text encoder's stays constant
    default_batches = 5000  # 1,000 text pre-training and 4,000 GAN batches (benchmarks/README.md)
    default_data = "mnist-attributes"  # captions are written from its attribute labels
    Config = Text2ImageConfig

    def __init__(self, config: Text2ImageConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise GenzooError(f"text2image needs image sides divisible by 4, got {height}x{width}")
        self.words = vocabulary(config.classes, config.captions)
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
        if config.recorded_words:  # UTF-8 bytes of the distinct words of users' captions trained on
            self.register_buffer("user_words", torch.zeros(config.recorded_words, WORD_BYTES, dtype=torch.uint8))
            self.register_buffer("user_word_count", torch.zeros((), dtype=torch.long))
        else:
            self.user_words = None
        self._recorded: tuple[int, set[str]] = (0, set())  # user_word_count and the decoded words, cached
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

    def write(self, labels: Tensor, generator: torch.Generator, held_out: bool = False) -> list[str]:
        """Captions of attribute label rows in the model's style (``captions``): naming the parts that are not
        ``UNNAMED``, or all five with the templates."""
        if self.config.captions == "partial":
            return partial_caption(labels.cpu(), self.config.classes, generator, held_out)
        return caption(labels.cpu(), self.config.classes, generator, held_out)

    def sentences(self, labels: Tensor | None, batch_index: int) -> tuple[list[str], Tensor]:
        """A caption per image and the label rows the captions name: a user's caption (its byte codes), or one
        written from attribute labels (with ``captions="partial"`` naming a random subset of the parts, the others
        ``UNNAMED``); seeded by the batch."""
        if is_caption_codes(labels):
            return decode_captions(labels.cpu()), labels
        labels = self.check_labels(labels)
        if self.config.captions == "partial":
            labels = name_parts(labels.cpu(), batch_generator("named parts", batch_index)).to(labels.device)
        return self.write(labels, batch_generator("captions", batch_index)), labels

    def check_labels(self, labels: Tensor | None) -> Tensor:
        if is_caption_codes(labels):
            return labels
        if labels is None or labels.dim() != 2 or labels.shape[1] != 5:
            raise GenzooError(
                "text2image needs captions: train it on mnist-attributes / fashion-attributes (captions written "
                "from attribute labels) or on folder:PATH with a captions.txt"
            )
        return labels

    def mismatched(self, named: Tensor, right: Tensor, batch_index: int) -> Tensor:
        """phi of a wrong caption per image: its caption's parts with one named part changed (``one-factor``,
        attribute labels only), else the next caption of the batch (the paper's random mismatch)."""
        if self.config.mismatch == "one-factor" and not is_caption_codes(named):
            generator = batch_generator("mismatched captions", batch_index)
            wrong = self.write(one_factor_mismatch(named.cpu(), generator), generator)
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

    def record_words(self, sentences: list[str]) -> None:
        """Keep the words of users' captions seen in training (up to ``recorded_words``), so ``sample`` can tell
        which words of a caption the model never trained on."""
        if self.user_words is None:
            return
        count, known = self.recorded()
        for word in sorted({_word_key(w) for s in sentences for w in tokenize(s)} - known):
            if count == len(self.user_words):
                break
            data = word.encode("utf-8")
            self.user_words[count, : len(data)] = torch.tensor(list(data), dtype=torch.uint8)
            count += 1
            known.add(word)
        self.user_word_count.fill_(count)
        self._recorded = (count, known)

    def recorded(self) -> tuple[int, set[str]]:
        """The number of recorded words of users' captions and the words (decoded once per count)."""
        count = int(self.user_word_count) if self.user_words is not None else 0
        if count != self._recorded[0]:
            rows = self.user_words[:count].cpu().tolist()
            self._recorded = (count, {bytes(v for v in row if v).decode("utf-8") for row in rows})
        return count, set(self._recorded[1])

    def known_words(self) -> list[str] | None:
        """The words a caption may use: the closed word list of attribute captions, or the recorded words of a
        user's captions; None for a model of users' captions stored before words were recorded (unknown)."""
        if int(self.example_count):
            return sorted(self.recorded()[1]) if self.user_words is not None else None
        return [w for w in self.words if not w.startswith("<")]

    def understood(self, text: str, allow_unknown: bool = False) -> str:
        """``text`` without punctuation the model does not know; its other unknown words are a GenzooError naming
        them and the nearest known words, unless ``allow_unknown``."""
        known = self.known_words()
        if known is None:
            return text
        known_keys = {_word_key(w) for w in known}
        words = [w for w in tokenize(text) if _word_key(w) in known_keys or w not in ",:."]
        unknown = list(dict.fromkeys(w for w in words if _word_key(w) not in known_keys))
        if unknown and not allow_unknown:
            nearest = "; ".join(
                f"{word!r}: {', '.join(difflib.get_close_matches(word, known, 3, 0.5)) or 'none close'}"
                for word in unknown
            )
            raise GenzooError(
                f"text2image does not know the word{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} "
                f"(nearest known words: {nearest}); --vocabulary lists them all, --allow-unknown samples anyway"
            )
        return " ".join(words)

    def describe_vocabulary(self) -> str:
        """The words captions may use, grouped by the part they name, with example captions."""
        known = self.known_words()
        if known is None:
            examples = "; ".join(self.example_sentences(min(8, int(self.example_count))))
            return f"this model's words were not recorded (trained before they were); its captions: {examples}"
        if int(self.example_count):
            return f"words of the captions it trained on ({len(known)}): {' '.join(known)}"
        lines = [f"class: {', '.join(w for synonyms in CLASS_WORDS[self.config.classes] for w in synonyms)}"]
        for group, values in zip(GROUPS, ATTRIBUTE_WORDS):
            lines.append(f"{group}: {' | '.join(', '.join(synonyms) for synonyms in values)}")
        lines.append(f"other words: {' '.join(sorted(frame_words(self.config.captions)))}")
        if self.config.captions == "partial":
            lines.append(f"name the class and any of the other parts, e.g. {', '.join(map(repr, EXAMPLES))}")
        else:
            lines.append("trained on captions naming all five parts, e.g. 'a thick red seven leaning right on black'")
        return "\n".join(lines)

    def discriminator_losses(
        self, real: Tensor, fake: Tensor, right: Tensor, mismatched: Tensor, labels: Tensor, named: Tensor
    ) -> dict[str, Tensor]:
        """The matching-aware loss over the three pairs (real, right), (real, mismatched), (fake, right), plus the
        matching term over every (real image, caption) pair of the batch when ``matching_weight`` > 0 (``labels``
        the images' rows, ``named`` the captions')."""
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
            matching = matching_loss(d.pair_scores(real_features, right), labels, named)
            loss = loss + self.config.matching_weight * matching
            logs["d_matching_loss"] = matching
        return {"loss": loss, **logs}

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        c = self.config
        real = self._layout(batch["x"])
        labels = self.check_labels(batch.get("y"))
        self.remember_captions(labels)
        sentences, named = self.sentences(labels, step.batch_index)
        if is_caption_codes(labels):
            self.record_words(sentences)
        tokens = self.tokens(sentences)
        if step.batch_index < c.text_pretrain_batches:
            return self.pretrain_text(real, labels, named, tokens, step)

        with torch.no_grad():
            right = self.embed_condition(tokens, batch_generator("condition word dropout", step.batch_index))
        mismatched = self.mismatched(named, right, step.batch_index)
        latent = self.latent(len(real))
        fake = self.generator(latent, right)
        d_losses = self.discriminator_losses(real, fake, right, mismatched, labels, named)
        d_loss = d_losses.pop("loss")
        step.optimize(d_loss, "discriminator")

        # beta = 1/2, brought back to the sphere (radius sqrt(text_dim)) that the encoder's embeddings lie on
        interpolated = self.condition(F.normalize(right + right.roll(1, 0), dim=1))
        logs = {}
        with frozen(self.discriminator):
            fake_features = self.discriminator.image_features(fake)
            # log D(x^, h) and the INT term log D(G(z, h_int), h_int), as non-saturating BCE
            adversarial = generator_loss(self.discriminator.score(fake_features, right), "non-saturating")
            interpolation = generator_loss(
                self.discriminator(self.generator(self.latent(len(real)), interpolated), interpolated), "non-saturating"
            )
            g_loss = adversarial + c.interpolation_weight * interpolation
            if c.matching_weight > 0:
                # a fake image shows the parts its caption names; the others are its own
                matching = matching_loss(self.discriminator.pair_scores(fake_features, right), named, named)
                g_loss = g_loss + c.matching_weight * matching
                logs["g_matching_loss"] = matching.detach()
            if c.mode_seeking_weight > 0:
                mode_seeking = self.mode_seeking(fake[: len(real) // 2], latent[: len(real) // 2], right)
                g_loss = g_loss + c.mode_seeking_weight * mode_seeking
                logs["mode_seeking_loss"] = mode_seeking.detach()
        step.optimize(g_loss, "generator")
        self.update_average(latent, right, step.batch_index - c.text_pretrain_batches)
        return {
            "discriminator_loss": d_loss.detach(),
            **{k: v.detach() for k, v in d_losses.items()},
            "generator_loss": adversarial.detach(),
            "interpolation_loss": interpolation.detach(),
            **logs,
        }

    def mode_seeking(self, fake: Tensor, latent: Tensor, condition: Tensor) -> Tensor:
        """MSGAN's term (Mao et al. 2019): 1 / (mean |G(z1, h) - G(z2, h)| / mean |z1 - z2|) for a second noise draw
        z2 on the same captions; small when images differ as much as their noises do, so the parts a caption
        leaves open follow the noise instead of collapsing to one value per caption."""
        other_latent = self.latent(len(latent))
        other = self.generator(other_latent, condition[: len(latent)])
        ratio = (fake - other).abs().mean() / (latent - other_latent).abs().mean()
        return 1 / (ratio + 1e-5)

    def pretrain_text(
        self, real: Tensor, labels: Tensor, named: Tensor, tokens: Tensor, step: Step
    ) -> dict[str, Tensor]:
        """Reed et al. pre-train the text encoder, then keep it fixed: the GAN starts on a settled embedding.
        The joint image-text objective (an image matches every caption whose named parts it shows), on captions
        with their words shuffled (``word_order_noise``), plus a text-text one between two phrasings of each
        caption's named parts (``phrasing_term``, attribute captions only)."""
        c = self.config
        tokens = self.phrasing_noise(tokens, batch_generator("word order", step.batch_index))
        texts = self.text_encoder(tokens)
        joint = joint_embedding_loss(self.image_encoder(real), texts, labels, c.temperature, named)
        logs = {"joint_embedding_loss": joint.detach()}
        loss = joint
        if c.phrasing_term and not is_caption_codes(labels):
            generator = batch_generator("second phrasings", step.batch_index)
            others = self.phrasing_noise(self.tokens(self.write(named, generator)), generator)
            phrasing = joint_embedding_loss(self.text_encoder(others), texts, named, c.temperature)
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
    def sample(self, n: int, text: str = "", interpolate: str = "", allow_unknown: bool = False) -> Tensor:
        """``text``: n images of that sentence; ``interpolate`` "first sentence | second sentence": n images
        along the line between their embeddings (one noise draw); neither: n images of :meth:`example_sentences`.
        Words the model never trained on are an error naming them (:meth:`understood`) unless ``allow_unknown``."""
        if interpolate:
            ends = [part.strip() for part in interpolate.split("|")]
            if len(ends) != 2 or not all(ends):
                raise GenzooError('--interpolate takes two sentences separated by "|"')
            first, second = self.embed([self.understood(end, allow_unknown) for end in ends])
            weights = torch.linspace(0, 1, n, device=first.device)[:, None]
            embeddings = self.condition(F.normalize((1 - weights) * first + weights * second, dim=1))
            return self.sampling_generator(self.latent(1).expand(n, -1), embeddings)
        if text:
            return self.sampling_generator(
                self.latent(n), self.embed([self.understood(text, allow_unknown)]).expand(n, -1)
            )
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
        classifier's feature space; the classifier's accuracy on the real test images (the ceiling); and captions
        that name only some parts (:meth:`evaluate_partial_captions`). A user's captions: see
        :meth:`evaluate_user_captions`."""
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
        report.update(self.evaluate_partial_captions(labels, classifier))
        if classifier is not None:
            report["classifier"] = classifier.name
        return report

    def evaluate_partial_captions(self, labels: Tensor, classifier: Any) -> dict[str, Any]:
        """Captions naming the class and a random subset of the attributes (:func:`name_parts`), in held-out frames
        and, to compare, training ones: scored on the parts each names (:func:`partial_caption_report`); and how
        the parts a caption leaves open spread over their values (:meth:`unnamed_spread`)."""
        named = name_parts(labels.cpu(), torch.Generator().manual_seed(EVAL_SEED))
        report: dict[str, Any] = {}
        for held_out, prefix in ((True, "held_out_partial_"), (False, "train_phrasing_partial_")):
            sentences = partial_caption(
                named, self.config.classes, torch.Generator().manual_seed(EVAL_SEED), held_out=held_out
            )
            report.update(partial_caption_report(self.read(self.generate(sentences), classifier), named, prefix))
        report.update(self.unnamed_spread(named, labels))
        return report

    @staticmethod
    def read(images: Tensor, classifier: Any) -> Tensor:
        """Label rows [N, 1 + groups] read from images in [-1, 1]: the class by the classifier (``UNNAMED``
        without one), the attributes by :func:`read_attributes`."""
        unit = (images + 1) / 2
        classes = classify(classifier, unit)[1] if classifier is not None else torch.full((len(unit),), UNNAMED)
        return torch.cat([classes[:, None].cpu(), read_attributes(unit)], 1)

    def unnamed_spread(self, named: Tensor, labels: Tensor) -> dict[str, float]:
        """For each attribute group: over captions that leave it open (training frames, ``SPREAD_CAPTIONS`` of the
        rows spread over the whole split, which is sorted by class), the share of a caption's ``SPREAD_SAMPLES``
        images (noise draws) that show the group's most frequent value, averaged over the captions; next to the
        share of the data's most frequent value. A generator that ignores its noise scores 1."""
        rows = named[torch.linspace(0, len(named) - 1, SPREAD_CAPTIONS).long()]
        sentences = partial_caption(rows, self.config.classes, torch.Generator().manual_seed(EVAL_SEED))
        read = read_attributes((self.generate([s for s in sentences for _ in range(SPREAD_SAMPLES)]) + 1) / 2)
        read = read.view(len(rows), SPREAD_SAMPLES, len(GROUPS))
        report = {}
        for g, (group, values) in enumerate(ATTRIBUTE_GROUPS.items()):
            open_rows = rows[:, 1 + g] == UNNAMED
            counts = F.one_hot(read[open_rows, :, g], len(values)).sum(1)  # [captions, values]
            report[f"unnamed_{group}_top_share"] = float(counts.amax(1).float().mean() / SPREAD_SAMPLES)
            report[f"data_{group}_top_share"] = float(
                labels[:, 1 + g].bincount(minlength=len(values)).max() / len(labels)
            )
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


def _word_key(word: str) -> str:
    """A word as recorded: its first ``WORD_BYTES`` UTF-8 bytes."""
    return word.encode("utf-8")[:WORD_BYTES].decode("utf-8", errors="ignore")


def partial_caption_report(read: Tensor, named: Tensor, prefix: str) -> dict[str, float]:
    """Scores of images read back as label rows ``read`` [N, 1 + groups] (class ``UNNAMED`` when there is no class
    reader) against the rows their captions name, ``named`` (``UNNAMED`` for the parts left open): a caption
    matches when every part it names (the class always) is read back; the share of matching captions overall, by
    the number of parts named (class included: 1-3, 4, 5), and per part over the captions naming it."""
    scored = named != UNNAMED
    if bool((read[:, 0] == UNNAMED).all()):
        scored[:, 0] = False  # no class reader: the attributes alone
    hits = (read == named) | ~scored  # [N, 1 + groups]
    matched = hits.all(1).float()
    parts = (named != UNNAMED).sum(1)
    report = {f"{prefix}caption_match": float(matched.mean()), f"{prefix}captions": len(named)}
    for name, chosen in (("1_to_3_parts", parts <= 3), ("4_parts", parts == 4), ("5_parts", parts == 5)):
        if chosen.any():
            report[f"{prefix}caption_match_{name}"] = float(matched[chosen].mean())
    for p, part in enumerate(("class", *GROUPS)):
        if scored[:, p].any():
            report[f"{prefix}{part}_match"] = float(hits[scored[:, p], p].float().mean())
    return report
