"""StarGAN: Choi, Choi, Kim, Ha, Kim & Choo, "StarGAN: Unified Generative Adversarial Networks for Multi-Domain
Image-to-Image Translation", CVPR 2018.

One generator G(x, c) translates an image x to the target label c (replicated over its pixels); the discriminator
has a real/fake head D_src and an auxiliary classifier D_cls over the domains. Objective (eq. 5 with WGAN-GP,
eq. 8), c' the source label of x:

    L_D = -D_src(x) + D_src(G(x, c)) + lambda_gp GP + lambda_cls L_cls^r       (L_cls^r: D_cls(x) against c')
    L_G =            -D_src(G(x, c))               + lambda_cls L_cls^f + lambda_rec ||x - G(G(x, c), c')||_1

with lambda_cls = 1, lambda_rec = 10, lambda_gp = 10. Adam(2e-4, 0.5, 0.999); the rate decays linearly to 0 over
the last half of training.

Domains are multi-label: the attribute groups of :mod:`genzoo.data.domains` (thickness, slant, colour,
background). A label is one one-hot vector per group (10 entries); targets are the batch's own labels shuffled (as
the official code does), so several attributes change at once. D_cls gives one softmax per group and L_cls is the
sum of their cross-entropies (the paper's binary cross-entropy is this with two-valued groups). Translating a
user's image keeps the groups not named at the values measured on it.
On data with named 0/1 attributes (``--data celeba?attributes=Black_Hair,Blond_Hair,Brown_Hair,Male,Young``, the
paper's five, or a folder with ``attributes.txt``) each attribute is a group of two values; ``--to Blond_Hair,-Male``
sets the named ones and keeps the others at what D_cls reads on the image (no training-free reader exists there).

Architecture: a ResNet generator (width 16, 3 residual blocks; the paper: 64 and 6 at 128x128) and a PatchGAN
critic of width 32 without normalization (:mod:`genzoo.nn.translation`) whose D_src ends in a 2x2 grid of scores
each seeing the whole image, the geometry of the paper's D at 128x128.

Departures (each measured: benchmarks/log/translation.md):
- Batch norm in the generator, not instance norm, which subtracts the replicated label exactly (G could not see
  its target). Log: "StarGAN: batch-norm generator".
- One down-sampling (residual blocks at 14x14), as in CycleGAN. Log: "StarGAN: one down-sampling".
- G predicts a change of its input, G(x, c) = clamp(x + 2 tanh(net(x, c)), -1, 1) with a straight-through clamp,
  starting near x (``generator_output="image"`` is the paper's). Log: "StarGAN: residual generator".
- G updates after every second critic update (``critic_steps`` 2; the paper: 5). Log: "StarGAN: critic steps".
- Rate 2e-4 (the paper: 1e-4), for a budget far shorter than the paper's. Log: "StarGAN: learning rate".
- ``ema_decay`` and ``identity_weight`` are options measured and left off. Log: "StarGAN: options left off".
- ``conditioning="film"`` (opt-in, not the paper's) feeds the target label to every normalization of G as a
  per-channel scale and shift instead of input label maps. Log: "StarGAN: FiLM conditioning".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.data.attributes import parse_attribute_values
from genzoo.data.domains import ATTRIBUTE_GROUPS, GROUPS, parse_attributes, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss, gradient_penalty
from genzoo.models.adversarial.base import frozen, update_weight_average, weight_average
from genzoo.models.base import Step
from genzoo.models.translation.base import (
    EVAL_CHUNK,
    TranslationConfig,
    TranslationModel,
    classifier_for,
    classify,
    cycle_loss,
    frechet_distance_in,
    sample_metric_features,
)
from genzoo.nn.translation import (
    Conditioning,
    GeneratorOutput,
    PatchDiscriminator,
    ResnetGenerator,
    group_logits,
    one_hot_groups,
)
from genzoo.registry import models

GROUP_SIZES: tuple[int, ...] = tuple(len(values) for values in ATTRIBUTE_GROUPS.values())
EVAL_SEED = 0


@dataclass
class StarGANConfig(TranslationConfig):
    classification_weight: float = 1.0
    reconstruction_weight: float = 10.0
    identity_weight: float = 0.0  # > 0 adds CycleGAN's identity term, weight x |G(x, c_x) - x|
    gradient_penalty_weight: float = 10.0
    critic_steps: int = 2  # discriminator updates per generator update (the paper: 5; see the docstring)
    # residual: G(x, c) = x + 2 tanh(network), clamped to [-1, 1], starting near x; image: the paper's tanh output
    generator_output: GeneratorOutput = added_later("residual", before="image")
    # D_src's scores form a 2x2 grid, each seeing the whole image (the paper's D); 0: 7x7 patches
    score_grid: int = added_later(2, before=0)
    # how the target label enters G: concat, the paper's label maps beside the image; film, a scale and shift of
    # every normalization layer's features (:class:`genzoo.nn.translation.FiLMNormalization`)
    conditioning: Conditioning = "concat"
    channels_last: bool = True  # parameters and training images in the NHWC layout (measured faster)


def classification_loss(logits: Tensor, values: Tensor, sizes: tuple[int, ...] = GROUP_SIZES) -> Tensor:
    """Sum over attribute groups of the cross-entropy of D_cls's logits [B, sum sizes] against values [B, G]."""
    return sum(F.cross_entropy(block, values[:, g]) for g, block in enumerate(group_logits(logits, sizes)))


def predicted_values(logits: Tensor, sizes: tuple[int, ...] = GROUP_SIZES) -> Tensor:
    """D_cls's most likely value per group, [B, G]."""
    return torch.stack([block.argmax(1) for block in group_logits(logits, sizes)], 1)


@models.register("stargan")
class StarGAN(TranslationModel):
    """One conditional ResNet generator; a PatchGAN critic with an auxiliary per-group attribute classifier."""

    Config = StarGANConfig
    precision = "bf16-mixed"  # faster at the same result (benchmarks/log/translation.md, "StarGAN in bf16")
    default_batches = 5300  # the budget of benchmarks/README.md

    def __init__(self, config: StarGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise GenzooError(f"stargan needs image sides divisible by 4, got {height}x{width}")
        if config.critic_steps < 1:
            raise GenzooError("critic_steps must be at least 1")
        # the attribute groups and their sizes: the digit views', or each named attribute as a group of two
        self.groups = tuple(config.attributes) or GROUPS
        self.group_sizes = (2,) * len(config.attributes) if config.attributes else GROUP_SIZES
        self.generator = ResnetGenerator(
            channels,
            width=config.generator_width,
            blocks=config.residual_blocks,
            condition_channels=sum(self.group_sizes),
            downsamplings=config.downsamplings,
            normalization=config.generator_normalization,
            output=config.generator_output,
            conditioning=config.conditioning,
        )
        self.generator_average = weight_average(self.generator, config.ema_decay)
        self.discriminator = PatchDiscriminator(
            channels, height, config.discriminator_width, classes=sum(self.group_sizes), normalization="none",
            score_grid=config.score_grid,
        )  # fmt: skip
        self._lay_out_parameters()

    def training_only_modules(self) -> tuple[str, ...]:
        # with named attributes, translation reads the image's other attributes with D_cls
        critic = () if self.named_attributes else ("discriminator",)
        return critic if self.generator_average is None else (*critic, "generator")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        return {
            "discriminator": self.adam(self.discriminator.parameters(), c.lr),
            "generator": self.adam(self.generator.parameters(), c.lr),
        }

    @property
    def translator(self) -> nn.Module:
        """G as translation and evaluation use it: its weight average when ``ema_decay`` > 0."""
        return self.generator if self.generator_average is None else self.generator_average

    def generate(self, images: Tensor, values: Tensor, network: nn.Module | None = None) -> Tensor:
        """G(x, c) for target value indices [B, G], by ``network`` (default: the trained G)."""
        network = self.generator if network is None else network
        return network(images, one_hot_groups(values, self.group_sizes))  # [B, C, H, W] in [-1, 1]

    def critic_scores(self, images: Tensor) -> Tensor:
        return self.discriminator(images)[0]

    def discriminator_loss(self, real: Tensor, fake: Tensor, source_values: Tensor) -> dict[str, Tensor]:
        c = self.config
        real_scores, real_classes = self.discriminator(real)
        fake_scores, _ = self.discriminator(fake.detach())
        adversarial = discriminator_loss(real_scores, fake_scores, "wasserstein")  # -D_src(x) + D_src(G(x, c))
        classification = classification_loss(real_classes, source_values, self.group_sizes)  # L_cls^r
        penalty = gradient_penalty(self.critic_scores, real, fake)  # GP
        total = adversarial + c.classification_weight * classification + c.gradient_penalty_weight * penalty
        return {"loss": total, "critic_loss": adversarial, "real_classification_loss": classification,
                "gradient_penalty": penalty}  # fmt: skip

    def generator_losses(
        self, real: Tensor, fake: Tensor, source_values: Tensor, target_values: Tensor
    ) -> dict[str, Tensor]:
        c = self.config
        with frozen(self.discriminator):
            fake_scores, fake_classes = self.discriminator(fake)
            adversarial = generator_loss(fake_scores, "wasserstein")  # -D_src(G(x, c))
            classification = classification_loss(fake_classes, target_values, self.group_sizes)  # L_cls^f
        reconstruction = cycle_loss(self.generate(fake, source_values), real)  # ||x - G(G(x, c), c')||_1
        total = adversarial + c.classification_weight * classification + c.reconstruction_weight * reconstruction
        losses = {"generator_loss": adversarial, "fake_classification_loss": classification,
                  "reconstruction_loss": reconstruction}  # fmt: skip
        if c.identity_weight:  # CycleGAN's identity term (not StarGAN's): asked for its own labels, G keeps x
            losses["identity_loss"] = cycle_loss(self.generate(real, source_values), real)
            total = total + c.identity_weight * losses["identity_loss"]
        return {"loss": total, **losses}

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        real = self._layout(batch["x"])
        source_values = self.attribute_values(batch.get("y"))
        target_values = source_values[torch.randperm(len(real), device=real.device)]
        self.remember_examples(real)
        # after every critic_steps-th critic update, as the official code's (i + 1) % n_critic == 0; it also puts
        # G's losses on the batches the engine logs (every 10th)
        generator_turn = (step.batch_index + 1) % self.config.critic_steps == 0
        with torch.set_grad_enabled(generator_turn):  # the critic alone needs no graph through G
            fake = self.generate(real, target_values)
        d_losses = self.discriminator_loss(real, fake, source_values)
        step.optimize(d_losses.pop("loss"), "discriminator")
        logs = {k: v.detach() for k, v in d_losses.items()}
        if generator_turn:
            g_losses = self.generator_losses(real, fake, source_values, target_values)
            step.optimize(g_losses.pop("loss"), "generator")
            self.update_average(real, target_values, step.batch_index // self.config.critic_steps)
            logs.update({k: v.detach() for k, v in g_losses.items()})
        return logs

    @torch.no_grad()
    def update_average(self, images: Tensor, values: Tensor, updates: int) -> None:
        """The warmed-up weight average of G (:func:`update_weight_average`) after ``updates`` generator updates;
        its batch-norm statistics are its own, from a forward pass on this batch in training mode."""
        if self.generator_average is None:
            return
        update_weight_average(self.generator_average, self.generator, self.config.ema_decay, updates)
        self.generator_average.train()(images, one_hot_groups(values, self.group_sizes))

    def read_values(self, images: Tensor) -> Tensor:
        """The attribute values of ``images`` [B, C, H, W] in [-1, 1], [B, G]: measured on digit views, read by
        D_cls on named attributes."""
        if self.named_attributes:
            logits = torch.cat([self.discriminator(part)[1] for part in images.split(EVAL_CHUNK)])
            return predicted_values(logits, self.group_sizes)
        return read_attributes((images.cpu() + 1) / 2).to(images.device)

    def target_values(self, images: Tensor, to: str) -> Tensor:
        """The attributes of ``images`` (:meth:`read_values`) with the groups named in ``to`` ("thick,red";
        "Blond_Hair,-Male") replaced, [B, G]."""
        values = self.read_values(images)
        if self.named_attributes:
            chosen = parse_attribute_values(to, self.config.attributes, "the run's data")
        else:
            chosen = parse_attributes(to)
        for group, value in chosen.items():
            values[:, group] = value
        return values

    def translate(self, images: Tensor, to: str) -> Tensor:
        return self.generate(images, self.target_values(images, to), self.translator)

    @torch.no_grad()
    def sample(self, n: int, to: str = "") -> Tensor:
        """Real training images kept in the weights, translated to ``to`` ("thick,red"; groups not named keep
        their measured values) or, when empty, to random target labels."""
        examples = self.stored_examples(n)
        if to:
            return self.translate(examples, to)
        generator = torch.Generator().manual_seed(EVAL_SEED)
        if self.named_attributes:  # the attributes of other examples, as training shuffles a batch's labels
            targets = self.read_values(examples)[torch.randperm(n, generator=generator).to(examples.device)]
        else:
            targets = torch.stack([torch.randint(s, (n,), generator=generator) for s in GROUP_SIZES], 1)
        return self.generate(examples, targets.to(examples.device), self.translator)

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """attribute_changes.png: 8 test images (first row) and, in each following row, one attribute value set
        (named attributes: one attribute turned over, from what D_cls reads)."""
        source = x[:8]
        rows = [source]
        if self.named_attributes:
            read = self.read_values(source)
            for g in range(len(self.groups)):
                values = read.clone()
                values[:, g] = 1 - values[:, g]
                rows.append(self.generate(source, values, self.translator))
            return {"attribute_changes.png": torch.stack(rows)}
        for values in ATTRIBUTE_GROUPS.values():
            rows += [self.translate(source, value) for value in values]
        return {"attribute_changes.png": torch.stack(rows)}

    def generate_in_chunks(self, images: Tensor, values: Tensor) -> Tensor:
        """:meth:`generate` by the translator, ``EVAL_CHUNK`` images at a time."""
        pairs = zip(images.split(EVAL_CHUNK), values.split(EVAL_CHUNK))
        return torch.cat([self.generate(xs, vs, self.translator) for xs, vs in pairs])

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """Test images translated to shuffled test labels (seeded): per-group and joint target accuracy read by
        the attribute measures, D_cls's accuracy on real images, class preservation, reconstruction L1. Then, to
        show where the class goes, the same images with one group changed and the others kept (``{group}_alone_*``,
        every image moved to another value of that group) and with nothing changed (``unchanged_*``)."""
        labels = self.check_labels(labels)[: self.config.eval_images]
        x = x[: self.config.eval_images]
        source_values = self.attribute_values(labels)
        generator = torch.Generator().manual_seed(EVAL_SEED)
        target_values = source_values[torch.randperm(len(x), generator=generator)]
        translated = self.generate_in_chunks(x, target_values)
        reconstructed = self.generate_in_chunks(translated, source_values)
        if self.named_attributes:
            data = data or getattr(self, "run_config", {}).get("data")
            return self.evaluate_named(x, source_values, target_values, translated, reconstructed, data)
        translated_unit = (translated + 1) / 2
        hits = read_attributes(translated_unit) == target_values  # [N, G]
        changed = target_values != source_values
        report: dict[str, Any] = {"test_images": len(x)}
        for g, group in enumerate(GROUPS):
            report[f"{group}_target_accuracy"] = float(hits[:, g].float().mean())
            report[f"{group}_changed_target_accuracy"] = float(hits[changed[:, g], g].float().mean())
        report["mean_attribute_accuracy"] = float(hits.float().mean())
        report["all_attributes_accuracy"] = float(hits.all(1).float().mean())
        real_classes = torch.cat([self.discriminator(part)[1] for part in x.split(EVAL_CHUNK)])
        report["auxiliary_classifier_accuracy"] = float(
            (predicted_values(real_classes) == source_values).float().mean()
        )
        report["reconstruction_l1"] = float(cycle_loss(reconstructed, x)) / 2
        classifier = classifier_for(data or getattr(self, "run_config", {}).get("data"))
        if classifier is not None:

            def class_kept(images: Tensor) -> float:
                """Share of images [N, C, H, W] in [0, 1] the classifier reads as their source's class."""
                return float((classify(classifier, images)[1] == labels[:, 0]).float().mean())

            report["classifier"] = classifier.name
            report["class_preservation"] = class_kept(translated_unit)
            report["real_class_accuracy"] = class_kept((x + 1) / 2)
            report.update(self.one_change_at_a_time(x, source_values, class_kept))
        return report

    def one_change_at_a_time(
        self, x: Tensor, source_values: Tensor, class_kept: Callable[[Tensor], float]
    ) -> dict[str, float]:
        """Class kept with nothing changed, and target hit and class kept with each group changed alone."""

        def translated(values: Tensor) -> Tensor:
            return (self.generate_in_chunks(x, values) + 1) / 2

        report = {"unchanged_class_preservation": class_kept(translated(source_values))}
        shift = torch.arange(len(x), device=x.device)
        for g, (group, size) in enumerate(zip(GROUPS, GROUP_SIZES)):
            values = source_values.clone()
            values[:, g] = (values[:, g] + 1 + shift % (size - 1)) % size  # every other value, in turn
            images = translated(values)
            report[f"{group}_alone_target_accuracy"] = float(
                (read_attributes(images)[:, g] == values[:, g]).float().mean()
            )
            report[f"{group}_alone_class_preservation"] = class_kept(images)
        return report

    def evaluate_named(
        self,
        x: Tensor,
        source_values: Tensor,
        target_values: Tensor,
        translated: Tensor,
        reconstructed: Tensor,
        data: str | None,
    ) -> dict[str, Any]:
        """Test images with named attributes (celeba, a user's folder) translated to shuffled test labels: there is
        no training-free attribute reader and no class, so D_cls reads the targets (the paper's own classification
        term, an optimistic judge of G), reconstruction L1, and the Fréchet distance of translated vs real test
        images in the data's feature net when it has one; else the report says why it is left out."""
        real_read = self.read_values(x)
        translated_read = self.read_values(translated)
        changed = target_values != source_values
        report: dict[str, Any] = {"test_images": len(x), "attributes": list(self.groups)}
        for g, name in enumerate(self.groups):
            report[f"{name}_discriminator_target_accuracy"] = float(
                (translated_read[:, g] == target_values[:, g]).float().mean()
            )
            if changed[:, g].any():
                hits = translated_read[changed[:, g], g] == target_values[changed[:, g], g]
                report[f"{name}_changed_discriminator_target_accuracy"] = float(hits.float().mean())
        report["mean_discriminator_target_accuracy"] = float((translated_read == target_values).float().mean())
        report["auxiliary_classifier_accuracy"] = float((real_read == source_values).float().mean())
        report["reconstruction_l1"] = float(cycle_loss(reconstructed, x)) / 2
        net, skipped = sample_metric_features(data)
        if net is not None and len(x) > 1:
            report["feature_net"] = net.name
            report["frechet_distance"] = frechet_distance_in(net, (x + 1) / 2, (translated + 1) / 2)
        else:
            report["sample_metrics_skipped"] = skipped or "fewer than two test images"
        return report
