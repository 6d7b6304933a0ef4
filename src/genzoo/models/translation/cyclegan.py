"""CycleGAN: Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", ICCV 2017.

Naming key (paper -> code): G: A -> B is ``generator_ab``, F: B -> A is ``generator_ba``, D_Y is
``discriminator_b``, D_X is ``discriminator_a``; domain X is A, Y is B.

Objective (eq. 3 with the least-squares GAN loss of section 4 and the identity loss of section 5.2). The generators
minimize

    L(G, F) = w ( L_GAN(G, D_B) + L_GAN(F, D_A) )                       w = ``adversarial_weight`` = 1
            + lambda ( ||F(G(a) + n) - a||_1 + ||G(F(b) + n') - b||_1 )   lambda = ``cycle_weight`` = 10
            + lambda_id lambda ( ||G(b) - b||_1 + ||F(a) - a||_1 )        lambda_id = ``identity_weight`` = 0.5

with L_GAN(G, D_B) = E[(D_B(G(a)) - 1)^2] and n, n' Gaussian noise of std ``cycle_noise`` (the paper: none);
each discriminator minimizes E[(D(real) - 1)^2] + E[D(fake)^2] (halved), its fakes drawn from a history pool of
50. Adam(2e-4, 0.5, 0.999); the rate is constant, then decays linearly to 0 over the last half of training.

Architecture: ResNet generators (c7s1, stride-2 down-sampling, residual blocks, up-sampling, c7s1 + tanh) and
PatchGAN discriminators (:mod:`genzoo.nn.translation`), scaled to 28x28: generator width 16 with 3 residual blocks
(the paper: 64 and 6-9), PatchGAN width 32 with a 26-pixel receptive field (the paper: 64 and 70). Domains A and B
are attribute values of :mod:`genzoo.data.domains` ("thin" / "thick", or several, "white,dark"); each batch is
split by its labels, and every source image is rendered once, so A and B never share a source.
On two folders of unpaired images (``--data folders:PATH_A,PATH_B``), A is the first folder and B the second; on
other data with named attributes (celeba), ``domain_a`` / ``domain_b`` name them ("Blond_Hair", "-Male": without).

Departures (each measured: benchmarks/log/translation.md):
- The generators down-sample once (residual blocks at 14x14), not twice: at 28x28 a 7x7 bottleneck blurred the
  strokes. Log: "CycleGAN: one down-sampling".
- Batch-norm generators (the official code's other ``--norm``), not instance norm, which divided out the colour
  of one-colour images; their running statistics come from the translation passes only
  (:func:`genzoo.nn.translation.batch_statistics_only`). Log: "CycleGAN: batch-norm generators".
- Noise of std 0.2 on each translation entering the cycle (Bashkirova et al., NeurIPS 2019), against the signal a
  cycle-consistent generator hides for its inverse. Log: "CycleGAN: noise in the cycle".
- ``ema_decay`` > 0 translates with a weight average of each generator; measured no better, so off by default.
  Log: "CycleGAN: weight average".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.data import ImageDataset
from genzoo.data.attributes import parse_attribute_values
from genzoo.data.domains import GROUPS, parse_attributes, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.metrics.sample_quality import frechet_distance_of_features
from genzoo.models.adversarial.base import frozen, update_weight_average, weight_average
from genzoo.models.base import Step
from genzoo.models.translation.base import (
    EVAL_CHUNK,
    TranslationConfig,
    TranslationModel,
    attribute_report,
    classifier_for,
    classify,
    cycle_loss,
    frechet_distance_in,
    sample_metric_features,
    with_noise,
)
from genzoo.nn.translation import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    batch_statistics_only,
    call_on_each,
)
from genzoo.registry import models


@dataclass
class CycleGANConfig(TranslationConfig):
    domain_a: str = "thin"
    domain_b: str = "thick"
    adversarial_weight: float = added_later(1.0, before=0.5)  # times the paper's E[(D(G(x)) - 1)^2]
    cycle_weight: float = 10.0
    identity_weight: float = 0.5  # relative to cycle_weight, as in the paper
    cycle_noise: float = added_later(0.2, before=0.0)  # std of the noise on translations in the cycle; the paper: 0
    pool_size: int = 50


def domain_members(labels: Tensor, domain: dict[int, int], first: int = 1) -> Tensor:
    """Rows [N] (bool) whose attribute values (label columns ``first``.., after the digit views' class column by
    default) match every group of ``domain``."""
    match = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    for group, value in domain.items():
        match &= labels[:, first + group] == value
    return match


def patch_loss(discriminator: PatchDiscriminator, real: Tensor, fake: Tensor) -> Tensor:
    """The least-squares discriminator loss on real and generated images, scored in one call (a PatchGAN normalizes
    per image, so the scores are those of two calls; see :func:`call_on_each`)."""
    real_scores, fake_scores = discriminator(torch.cat([real, fake]))[0].split([len(real), len(fake)])
    return discriminator_loss(real_scores, fake_scores, "least-squares")


@models.register("cyclegan")
class CycleGAN(TranslationModel):
    """Two ResNet generators, two PatchGANs, LSGAN + cycle + identity losses."""

    Config = CycleGANConfig
    precision = "bf16-mixed"  # faster at the same result (benchmarks/log/translation.md, "CycleGAN in bf16")
    default_batches = 2500  # every target met on eight seeds (benchmarks/README.md)

    def __init__(self, config: CycleGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        multiple = max(4, 2**config.downsamplings)  # the PatchGAN halves twice, the generator per down-sampling
        if height % multiple or width % multiple:
            raise GenzooError(f"cyclegan needs image sides divisible by {multiple}, got {height}x{width}")
        self.domain_a, self.domain_b = self.parse_domain(config.domain_a), self.parse_domain(config.domain_b)
        # attribute values of one group exclude each other; named attributes may both hold, they must only differ
        conflict = any(self.domain_a.get(g, v) != v for g, v in self.domain_b.items())
        if not (conflict or self.named_attributes and self.domain_a != self.domain_b):
            raise GenzooError(f"domains {config.domain_a!r} and {config.domain_b!r} overlap; they must differ")
        generator = functools.partial(
            ResnetGenerator,
            channels,
            width=config.generator_width,
            blocks=config.residual_blocks,
            downsamplings=config.downsamplings,
            normalization=config.generator_normalization,
        )
        self.generator_ab, self.generator_ba = generator(), generator()
        self.average_ab = weight_average(self.generator_ab, config.ema_decay)
        self.average_ba = weight_average(self.generator_ba, config.ema_decay)
        self.discriminator_a = PatchDiscriminator(channels, height, config.discriminator_width)
        self.discriminator_b = PatchDiscriminator(channels, height, config.discriminator_width)
        self.pool_a = ImagePool(config.pool_size, self.image_shape)
        self.pool_b = ImagePool(config.pool_size, self.image_shape)

    @classmethod
    def settings_for_data(cls, dataset: ImageDataset, settings: dict[str, Any]) -> dict[str, Any]:
        """Named attributes also give the domains, when the data has two (the A and B of ``folders:``) and the
        settings name none; with more, the settings must name both."""
        settings = super().settings_for_data(dataset, settings)
        names = dataset.attributes
        if names is None or {"domain_a", "domain_b"} <= settings.keys():
            return settings
        if len(names) != 2:
            raise GenzooError(
                f"cyclegan on {dataset.name} needs its two domains: --set domain_a=NAME --set domain_b=NAME "
                f"(attributes, -NAME for without: {', '.join(names)})"
            )
        return {"domain_a": names[0], "domain_b": names[1], **settings}

    def parse_domain(self, spec: str) -> dict[int, int]:
        """A domain as {attribute position: value}: attribute values of the digit views, or named attributes."""
        if self.named_attributes:
            return parse_attribute_values(spec, self.config.attributes, "the data")
        return parse_attributes(spec)

    def members(self, labels: Tensor, domain: dict[int, int]) -> Tensor:
        """Rows [N] (bool) of checked labels in ``domain``."""
        return domain_members(self.check_labels(labels), domain, 0 if self.named_attributes else 1)

    def training_only_modules(self) -> tuple[str, ...]:
        critics_and_pools = ("discriminator_a", "discriminator_b", "pool_a", "pool_b")
        if self.average_ab is None or self.average_ba is None:
            return critics_and_pools
        return (*critics_and_pools, "generator_ab", "generator_ba")

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        generators = [*self.generator_ab.parameters(), *self.generator_ba.parameters()]
        discriminators = [*self.discriminator_a.parameters(), *self.discriminator_b.parameters()]
        return {"generator": self.adam(generators, c.lr), "discriminator": self.adam(discriminators, c.lr)}

    def generator_losses(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """All generator terms for one batch; "loss" is their weighted sum (discriminators frozen)."""
        c = self.config
        fake_b, same_b = call_on_each(self.generator_ab, real_a, real_b)  # same_*: the identity term's images
        fake_a, same_a = call_on_each(self.generator_ba, real_b, real_a)
        with frozen(self.discriminator_a, self.discriminator_b):
            # L_GAN(G, D_B) + L_GAN(F, D_A): E[(D(G(a)) - 1)^2] is twice Mao et al.'s least-squares generator loss
            adversarial = 2 * (
                generator_loss(self.discriminator_b(fake_b)[0], "least-squares")
                + generator_loss(self.discriminator_a(fake_a)[0], "least-squares")
            )
        noisy_b, noisy_a = with_noise(fake_b, c.cycle_noise), with_noise(fake_a, c.cycle_noise)  # 0: the paper's
        # ||F(G(a) + n) - a||_1 + ||G(F(b) + n') - b||_1; batch norm's running statistics stay the translations'
        with batch_statistics_only(self.generator_ab, self.generator_ba):
            cycle = cycle_loss(self.generator_ba(noisy_b), real_a) + cycle_loss(self.generator_ab(noisy_a), real_b)
        identity = cycle_loss(same_b, real_b) + cycle_loss(same_a, real_a)  # ||G(b) - b||_1 + ||F(a) - a||_1
        total = c.adversarial_weight * adversarial + c.cycle_weight * (cycle + c.identity_weight * identity)
        return {"loss": total, "generator_loss": adversarial, "cycle_loss": cycle, "identity_loss": identity,
                "fake_a": fake_a, "fake_b": fake_b}  # fmt: skip

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        labels = batch.get("y")
        real_a = batch["x"][self.members(labels, self.domain_a)]
        real_b = batch["x"][self.members(labels, self.domain_b)]
        if len(real_a) == 0 or len(real_b) == 0:
            return {}
        self.remember_examples(real_a)
        losses = self.generator_losses(real_a, real_b)
        fake_a, fake_b = losses.pop("fake_a"), losses.pop("fake_b")
        step.optimize(losses.pop("loss"), "generator")
        update_weight_average(self.average_ab, self.generator_ab, self.config.ema_decay, step.batch_index)
        update_weight_average(self.average_ba, self.generator_ba, self.config.ema_decay, step.batch_index)
        pooled_a, pooled_b = self.pool_a.query(fake_a), self.pool_b.query(fake_b)
        d_loss = patch_loss(self.discriminator_a, real_a, pooled_a) + patch_loss(self.discriminator_b, real_b, pooled_b)
        step.optimize(d_loss, "discriminator")
        return {"discriminator_loss": d_loss.detach(), **{k: v.detach() for k, v in losses.items()}}

    @property
    def translators(self) -> tuple[nn.Module, nn.Module]:
        """(G: A -> B, F: B -> A) as translation and evaluation use them: their weight averages if ``ema_decay``."""
        if self.average_ab is None or self.average_ba is None:
            return self.generator_ab, self.generator_ba
        return self.average_ab, self.average_ba

    def translate(self, images: Tensor, to: str = "B") -> Tensor:
        """``to`` "B" (or the domain_b spec) applies G: A -> B; "A" (or domain_a) applies F: B -> A."""
        forward, backward = self.translators
        if to in ("B", "b", self.config.domain_b):
            return forward(images)
        if to in ("A", "a", self.config.domain_a):
            return backward(images)
        raise GenzooError(f"--to must be A or B (A = {self.config.domain_a}, B = {self.config.domain_b}), got {to!r}")

    @torch.no_grad()
    def sample(self, n: int, to: str = "B") -> Tensor:
        """Translations of real training images of domain A kept in the weights (``to`` A: back again, F(G(a)))."""
        translated = self.translate(self.stored_examples(n), "B")
        return translated if to in ("B", "b") else self.translate(translated, "A")

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """translations.png: rows of A, G(A), F(G(A)) for 8 test images of domain A (labels unknown here, so
        domain membership is read from the images; images with named attributes cannot be read: the first 8)."""
        if self.named_attributes:
            forward = self.translate(x[:8], "B")
            return {"translations.png": torch.stack([x[:8], forward, self.translate(forward, "A")])}
        measured = read_attributes((x + 1) / 2)
        in_a = torch.ones(len(x), dtype=torch.bool)
        for group, value in self.domain_a.items():
            in_a &= measured[:, group] == value
        source = x[in_a][:8] if in_a.any() else x[:8]
        forward = self.translate(source, "B")
        return {"translations.png": torch.stack([source, forward, self.translate(forward, "A")])}

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """Both directions on the test split: measured target-attribute accuracy, other attributes kept, class
        preservation by the base dataset's classifier, L1 cycle error (in [0, 1] units), Fréchet distance of
        translated vs real target images in the classifier's feature space."""
        labels = self.check_labels(labels)[: self.config.eval_images]
        x = x[: self.config.eval_images]
        if self.named_attributes:
            return self.evaluate_named(x, labels, data or getattr(self, "run_config", {}).get("data"))
        classifier = classifier_for(data or getattr(self, "run_config", {}).get("data"))
        report: dict[str, Any] = {"domain_a": self.config.domain_a, "domain_b": self.config.domain_b}
        forward_ab, forward_ba = self.translators
        directions = (("a_to_b", self.domain_a, self.domain_b, forward_ab, forward_ba),
                      ("b_to_a", self.domain_b, self.domain_a, forward_ba, forward_ab))  # fmt: skip
        for name, source_domain, target_domain, forward, backward in directions:
            source = domain_members(labels, source_domain)
            target = domain_members(labels, target_domain)
            images, image_labels = x[source], labels[source]
            translated = torch.cat([forward(part) for part in images.split(EVAL_CHUNK)])
            cycled = torch.cat([backward(part) for part in translated.split(EVAL_CHUNK)])
            translated_unit = (translated + 1) / 2
            targets = image_labels[:, 1:].clone()
            for group, value in target_domain.items():
                targets[:, group] = value
            report.update(attribute_report(translated_unit, targets, list(target_domain), f"{name}_"))
            report[f"{name}_cycle_l1"] = float(cycle_loss(cycled, images)) / 2
            report[f"{name}_images"] = len(images)
            if classifier is not None:
                features, predicted = classify(classifier, translated_unit)
                report[f"{name}_class_preservation"] = float((predicted == image_labels[:, 0]).float().mean())
                real_features, real_predicted = classify(classifier, (x[target] + 1) / 2)
                report[f"{name}_frechet_distance"] = frechet_distance_of_features(real_features, features)
                # the reader on real images of the target domain: the ceiling of this direction's class number
                report[f"{name}_class_ceiling"] = float((real_predicted == labels[target, 0]).float().mean())
        if classifier is not None:
            report["classifier"] = classifier.name
            report["real_class_accuracy"] = float((classify(classifier, (x + 1) / 2)[1] == labels[:, 0]).float().mean())
        report["attribute_reader_accuracy_on_real"] = float(
            (read_attributes((x + 1) / 2) == labels[:, 1:]).float().mean()
        )
        report["groups"] = list(GROUPS)
        return report

    def evaluate_named(self, x: Tensor, labels: Tensor, data: str | None) -> dict[str, Any]:
        """Both directions on test images with named attributes (a user's folders, celeba), which have no attribute
        reader and no class: the L1 cycle error (in [0, 1] units) and, when the data has a feature net, the
        Fréchet distance of translated vs real target-domain images; else the report says why it is left out."""
        net, skipped = sample_metric_features(data)
        report: dict[str, Any] = {"domain_a": self.config.domain_a, "domain_b": self.config.domain_b}
        forward_ab, forward_ba = self.translators
        directions = (("a_to_b", self.domain_a, self.domain_b, forward_ab, forward_ba),
                      ("b_to_a", self.domain_b, self.domain_a, forward_ba, forward_ab))  # fmt: skip
        for name, source_domain, target_domain, forward, backward in directions:
            images, real_targets = x[self.members(labels, source_domain)], x[self.members(labels, target_domain)]
            report[f"{name}_images"] = len(images)
            if len(images) == 0:
                continue
            translated = torch.cat([forward(part) for part in images.split(EVAL_CHUNK)])
            cycled = torch.cat([backward(part) for part in translated.split(EVAL_CHUNK)])
            report[f"{name}_cycle_l1"] = float(cycle_loss(cycled, images)) / 2
            if net is not None and min(len(images), len(real_targets)) > 1:
                distance = frechet_distance_in(net, (real_targets + 1) / 2, (translated + 1) / 2)
                report[f"{name}_frechet_distance"] = distance
        if net is not None:
            report["feature_net"] = net.name
        else:
            report["sample_metrics_skipped"] = skipped
        report["attributes"] = list(self.config.attributes)
        return report
