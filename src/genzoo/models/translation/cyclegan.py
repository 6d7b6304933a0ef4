"""CycleGAN (Zhu et al., ICCV 2017): unpaired translation between domains A and B with cycle consistency.

Two generators G: A -> B and F: B -> A (ResNet generators) and two PatchGAN discriminators D_B, D_A. The
generators minimize (eq. 3 with the least-squares GAN loss of section 4, and the identity loss of section 5.2)

    w ( L_LSGAN(G, D_B) + L_LSGAN(F, D_A) ) + lambda ( ||F(G(a) + n) - a||_1 + ||G(F(b) + n') - b||_1 )
        + lambda_id lambda ( ||G(b) - b||_1 + ||F(a) - a||_1 ),     lambda = 10, lambda_id = 0.5,

with L_LSGAN(G, D_B) = E[(D_B(G(a)) - 1)^2], w = ``adversarial_weight`` = 1 (the paper's; below), n and n'
Gaussian noise of std ``cycle_noise`` = 0.2 (the paper: none; below), and each discriminator minimizes its
least-squares loss on real images and on generated images drawn from a history pool of 50. Adam (2e-4, beta1 = 0.5);
the rate stays constant, then decays linearly to zero over the last half of training (the paper's 100 + 100 epochs,
here as a fraction of ``--max-steps``). The paper's rate is kept on measurement: at 1e-4, 1.5e-4 and 3e-4 (3,500
batches, several seeds each, before the cycle noise; benchmarks/RESULTS.md) thick -> thin kept no more class over
the seeds, and 3e-4 gained 1-2 points of it thin -> thick only.

Domains: ``domain_a`` / ``domain_b`` are attribute values of :mod:`genzoo.data.domains` ("thin" / "thick", or
several at once, "white,dark" / "red,light"). Each batch of ``mnist-attributes`` is split by its labels into the
images of A and of B (images in neither are unused); every source image is rendered once, so A and B never share
a source. Batches without an image of each domain are skipped. The history pool lives in buffers, so checkpoints keep
it and a resumed run continues exactly.

Scaled to 28x28 and two CPU cores: generator width 16 with 3 residual blocks (the paper: width 64, 6 blocks at
128x128, 9 at 256x256), PatchGAN of width 32 with a 26-pixel receptive field (the paper: 64 and 70 pixels).
Departure: the generator down-samples once (residual blocks at 14x14 with 32 channels) instead of twice (7x7 with
64, the same cost per block). The paper's two down-samplings keep a 64x64 or 32x32 map; at 28x28 they leave 7x7,
and that bottleneck blurred the strokes: after 1,000 batches class preservation was 74% with two, 86% with one
(thin -> thick, same settings otherwise).
``ema_decay`` > 0 translates with a weight average of each generator (as text2image and ProGAN sample); measured
with 0.999 on two seeds, it matched the trained generators within 0.5 points of class preservation (the rate
decays to zero, so the last generators are already a smoothed end point), so it is off by default.
Departure: the generators normalize over the batch (batch norm, the official code's other ``--norm`` and pix2pix's
choice), not per instance as the paper's. Instance norm divides out each feature map's contrast in every image, and
on a one-colour image that contrast is where the colour is: instance-norm generators confused every colour early in
training, and with the cycle noise (below) the thinning generator never won green back on two seeds of eight (thick
-> thin class kept 87.0 / 87.9%). Batch-norm generators kept the colours on every seed measured and met every target
in 2,500 batches where instance norm needed 3,500 (benchmarks/RESULTS.md). Their running statistics, which
evaluation and translation normalize with, are those of the translation passes only: the identity and cycle passes
normalize with their own batch's statistics and leave them alone (:func:`running_statistics_kept`); mixed in, they
cost 13-24 points of target accuracy. ``generator_normalization="instance"`` is the paper's.
w is the paper's 1 (genzoo's least-squares loss is Mao et al.'s, (D(G(a)) - 1)^2 / 2, so the generator term is
doubled to the paper's). Instance-norm generators needed 0.5: at 1 they let colour and background drift (other
attributes kept 78-88%). With batch norm, 1 meets the thinning target in fewer batches: after 2,500, thick -> thin
hit 96.7 / 97.1% against 88.1 / 88.5% at 0.5 (seeds 4 and 5).
Departure: noise in the cycle. Each translation enters the way back with Gaussian noise of std 0.2 added (in [-1, 1]
units; measured with instance-norm generators, below), the defence Bashkirova et al. (NeurIPS 2019, "Adversarial
self-defense for cycle-consistent GANs") propose against the signal a cycle-consistent generator hides for its
inverse. Thinning must drop detail of the thick source; without noise, F kept it as faint fill and double outlines
of the thick stroke, which G could read back but which lose the digit (a thick 1 drawn as a narrow ring reads 8).
The noise drowns faint ink, so only clear strokes help the reconstruction. Measured at 3,500 batches
(benchmarks/RESULTS.md): on seeds 0-3, 6 and 7 thick -> thin kept 90.8-92.1% of classes (85.6-88.5% without noise),
thin -> thick 91.0-92.1% (91.4-92.7%); on seeds 4 and 5 the thinning generator turned green ink blue and kept 87.0 /
87.9%, a failure no run without noise showed. Fréchet distances are higher with noise (159-230 and 65-104 against
155-168 and 59-65).
Evaluation reads the translated images' attributes with the training-free measures of
``domains.read_attributes`` and their class with the class reader of :func:`classifier_for`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.data.domains import GROUPS, parse_attributes, read_attributes
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.metrics.sample_quality import frechet_distance_of_features
from genzoo.models.adversarial.base import frozen, update_weight_average, weight_average
from genzoo.models.base import Step, TrainConfig
from genzoo.models.translation.base import (
    EVAL_CHUNK,
    TranslationModel,
    attribute_report,
    classifier_for,
    classify,
    cycle_loss,
    with_noise,
)
from genzoo.nn.translation import (
    ImagePool,
    Normalization,
    PatchDiscriminator,
    ResnetGenerator,
    call_together,
    running_statistics_kept,
)
from genzoo.registry import models


@dataclass
class CycleGANConfig(TrainConfig):
    domain_a: str = "thin"
    domain_b: str = "thick"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    adversarial_weight: float = added_later(1.0, before=0.5)  # times the paper's E[(D(G(x)) - 1)^2]
    cycle_weight: float = 10.0
    identity_weight: float = 0.5  # relative to cycle_weight, as in the paper
    cycle_noise: float = added_later(0.2, before=0.0)  # std of the noise on translations in the cycle; the paper: 0
    pool_size: int = 50
    generator_width: int = 16
    residual_blocks: int = 3
    downsamplings: int = added_later(1, before=2)  # stride-2 convolutions down (and up) in the generators; the paper: 2
    generator_normalization: Normalization = added_later("batch", before="instance")  # the paper: instance
    discriminator_width: int = 32
    decay_fraction: float = 0.5  # share of --max-steps over which the rate decays linearly to 0
    ema_decay: float = 0.0  # > 0: translations and evaluation use this average of the generators' weights
    eval_images: int = 1000  # test images (from the start of the split) that evaluate uses


def domain_members(labels: Tensor, domain: dict[int, int]) -> Tensor:
    """Rows [N] (bool) whose attribute values (label columns 1..) match every group of ``domain``."""
    match = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    for group, value in domain.items():
        match &= labels[:, 1 + group] == value
    return match


def patch_loss(discriminator: PatchDiscriminator, real: Tensor, fake: Tensor) -> Tensor:
    """The least-squares discriminator loss on real and generated images, scored in one call (a PatchGAN normalizes
    per image, so the scores are those of two calls; see :func:`call_together`)."""
    real_scores, fake_scores = discriminator(torch.cat([real, fake]))[0].split([len(real), len(fake)])
    return discriminator_loss(real_scores, fake_scores, "least-squares")


@models.register("cyclegan")
class CycleGAN(TranslationModel):
    """Two ResNet generators, two PatchGANs, LSGAN + cycle + identity losses."""

    Config = CycleGANConfig
    # measured (benchmarks/RESULTS.md): bf16 autocast 1.27x the fp32 rate at batch 64, and after the 3,500-batch
    # budget the same result: thin -> thick target 100% / class kept 93.1% in both, thick -> thin 100% / 86.2%
    # (fp32 88.3%, 10 of 478 images; class read before thin digits were grown back), cycle L1 0.021 / 0.028
    precision = "bf16-mixed"
    # the budget of benchmarks/RESULTS.md: every target met on eight seeds with batch-norm generators and the paper's
    # adversarial weight; 7.9 minutes on 2 cores in bf16 on 2026-12-02 (about 9.5 at that day's slowest rate).
    # Instance-norm generators needed 3,500 (10.9 minutes that day)
    default_batches = 2500

    def __init__(self, config: CycleGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        multiple = max(4, 2**config.downsamplings)  # the PatchGAN halves twice, the generator per down-sampling
        if height % multiple or width % multiple:
            raise GenzooError(f"cyclegan needs image sides divisible by {multiple}, got {height}x{width}")
        self.domain_a, self.domain_b = parse_attributes(config.domain_a), parse_attributes(config.domain_b)
        if not any(self.domain_a.get(g, v) != v for g, v in self.domain_b.items()):
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
        fake_b, same_b = call_together(self.generator_ab, real_a, real_b)  # same_*: the identity term's images
        fake_a, same_a = call_together(self.generator_ba, real_b, real_a)
        with frozen(self.discriminator_a, self.discriminator_b):
            # the paper's E[(D(G(x)) - 1)^2], twice Mao et al.'s least-squares generator loss
            adversarial = 2 * (
                generator_loss(self.discriminator_b(fake_b)[0], "least-squares")
                + generator_loss(self.discriminator_a(fake_a)[0], "least-squares")
            )
        noisy_b, noisy_a = with_noise(fake_b, c.cycle_noise), with_noise(fake_a, c.cycle_noise)  # 0: the paper's
        with running_statistics_kept(self.generator_ab, self.generator_ba):  # batch norm: kept from translations
            cycle = cycle_loss(self.generator_ba(noisy_b), real_a) + cycle_loss(self.generator_ab(noisy_a), real_b)
        identity = cycle_loss(same_b, real_b) + cycle_loss(same_a, real_a)
        total = c.adversarial_weight * adversarial + c.cycle_weight * (cycle + c.identity_weight * identity)
        return {"loss": total, "generator_loss": adversarial, "cycle_loss": cycle, "identity_loss": identity,
                "fake_a": fake_a, "fake_b": fake_b}  # fmt: skip

    def training_step(self, batch: dict[str, Tensor], step: Step) -> dict[str, Tensor]:
        labels = self.check_labels(batch.get("y"))
        real_a = batch["x"][domain_members(labels, self.domain_a)]
        real_b = batch["x"][domain_members(labels, self.domain_b)]
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
        domain membership is read from the images)."""
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
