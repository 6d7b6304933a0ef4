"""InfoGAN (Chen et al., NeurIPS 2016): a GAN whose latent codes c are kept recoverable from its samples.

The generator sees [z, c] with z ~ N(0, I) (62-d), a categorical code c_cat ~ Cat(K=10) and continuous codes
c_cont ~ U(-1, 1). An auxiliary head Q(c | x), sharing the discriminator's trunk, gives the variational lower
bound of eq. (4)-(5):

    L_I(G, Q) = E_{c ~ p(c), x ~ G(z, c)}[log Q(c | x)] + H(c)  <=  I(c; G(z, c)),

which G and Q maximize alongside the adversarial game (eq. 6: min_{G,Q} max_D V(D, G) - lambda L_I(G, Q), lambda = 1
for c_cat, ``continuous_weight`` for c_cont). The categorical term is a cross-entropy; the continuous codes use a
factored Gaussian with unit variance (the paper notes a fixed variance suffices), i.e. a squared error, weighted 1
as in the paper's released code (the text allows a smaller weight, which let two codes share two similar digits;
benchmarks/log/gan.md, "continuous codes' weight"). Networks
and learning rates follow the paper's MNIST appendix (Table 1): D/Q trunk conv64-conv128-fc1024, Q head fc128;
G fc1024-fc(128 x H/4 x W/4)-upconv64-upconv; D lr 2e-4, G lr 1e-3.

Q is the shared trunk plus its head (sec. 5), so L_I, computed on generated images only, trains the trunk, the Q
head and G, and never D's own output head; real images enter only D's adversarial loss, never L_I. As in the
paper's code, the trunk and Q head take L_I's gradient in the discriminator's step (one optimizer owns the trunk:
D's), on the same generated batch D sees, and G takes it in its own step through a frozen trunk and Q head. The
generator's adversarial loss moves no discriminator or Q parameter. No labels are used anywhere in training; they
only score the categorical code afterwards (best one-to-one matching, as the paper's 5% error on MNIST).

Departures (measured: benchmarks/log/gan.md):
- Every image D and Q see in training, real or generated, is translated by a random offset of up to
  ``augment_shift`` = 2 pixels (differentiably, so G is trained through it: DiffAugment's "translation", Zhao et al.
  2020): on the embedded MNIST's 4,000 training digits (the paper: 60,000) D memorized them, and Q, which shares its
  trunk, lost the digit classes. ``augment_shift=0`` is the paper's InfoGAN, with better samples where D has enough
  images not to memorize (fashion-mnist). Log: "InfoGAN: the discriminator memorized the 4,000 digits".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.config import added_later
from genzoo.data.transforms import random_shift
from genzoo.errors import GenzooError
from genzoo.losses import discriminator_loss, generator_loss
from genzoo.models.adversarial.base import EVAL_CHUNK, AdversarialConfig, AdversarialModel, frozen, normal_init
from genzoo.models.base import adam
from genzoo.registry import models

TRAVERSAL_RANGE = 2.0  # continuous codes are traversed over [-2, 2], beyond the U(-1, 1) prior as in Fig. 2


@dataclass
class InfoGANConfig(AdversarialConfig):
    latent_dim: int = 62  # incompressible noise z
    categories: int = 10
    continuous_codes: int = 2
    continuous_weight: float = 1.0
    generator_lr: float | None = 1e-3
    channels_last: bool = True
    # pixels: every image D and Q see in training, real or generated, randomly translated (runs stored before
    # the setting existed trained without)
    augment_shift: int = added_later(2, before=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment_shift < 0:
            raise ValueError(f"augment_shift must be a number of pixels >= 0, got {self.augment_shift}")


class SharedTrunkDiscriminator(nn.Module):
    """D(x) = head(trunk(x)); the trunk's 1024-d features also feed InfoGAN's Q head."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1),
            nn.LeakyReLU(0.1, True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.1, True),
            nn.Flatten(),
            nn.Linear(128 * (height // 4) * (width // 4), 1024, bias=False),
            nn.BatchNorm1d(1024),
            nn.LeakyReLU(0.1, True),
        )
        self.head = nn.Linear(1024, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.trunk(images))


@models.register("infogan")
class InfoGAN(AdversarialModel):
    """GAN with a categorical and continuous latent codes recovered by a Q head on D's trunk."""

    Config = InfoGANConfig
    default_batches = 5500  # the budget of its zoo entry and results row
    # faster on a bf16-native CPU at the same code accuracy (benchmarks/log/gan.md, "Speed"); the current defaults
    # (translations, continuous weight 1) were measured in fp32, on a CPU without native bf16
    precision = "bf16-mixed"

    def training_only_modules(self) -> tuple[str, ...]:
        return ()  # Q, which evaluate's code accuracy reads, shares D's trunk; D's own head is one small layer

    def __init__(self, config: InfoGANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        channels, height, width = image_shape
        if height % 4 or width % 4:
            raise GenzooError(f"InfoGAN needs image sides divisible by 4, got {height}x{width}")
        inputs = config.latent_dim + config.categories + config.continuous_codes
        self.generator = nn.Sequential(
            nn.Linear(inputs, 1024, bias=False),
            nn.BatchNorm1d(1024),
            nn.ReLU(True),
            nn.Linear(1024, 128 * (height // 4) * (width // 4), bias=False),
            nn.BatchNorm1d(128 * (height // 4) * (width // 4)),
            nn.ReLU(True),
            nn.Unflatten(1, (128, height // 4, width // 4)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(True),
            nn.ConvTranspose2d(64, channels, 4, 2, 1),
            nn.Tanh(),
        )
        self.discriminator = SharedTrunkDiscriminator(self.image_shape)
        self.q_head = nn.Sequential(
            nn.Linear(1024, 128, bias=False),
            nn.BatchNorm1d(128),
            nn.LeakyReLU(0.1, True),
            nn.Linear(128, config.categories + config.continuous_codes),  # category logits, continuous means
        )
        self.apply(normal_init)
        self._lay_out_parameters()

    def augment(self, images: Tensor) -> Tensor:
        shift = self.config.augment_shift
        return random_shift(images, shift, mode="replicate") if shift else images

    def latent(self, n: int, generator: torch.Generator | None = None, categories: Tensor | None = None) -> Tensor:
        """[z, one-hot c_cat, c_cont], [n, latent_dim + K + continuous]; ``categories`` [n] fixes c_cat."""
        c = self.config
        noise = torch.randn(n, c.latent_dim, generator=generator)
        if categories is None:
            categories = torch.randint(0, c.categories, (n,), generator=generator)
        continuous = torch.rand(n, c.continuous_codes, generator=generator) * 2 - 1
        one_hot = F.one_hot(categories.long(), c.categories).float()
        return torch.cat([noise, one_hot, continuous], 1).to(self._device())

    def split_latent(self, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """latent -> noise [B, latent_dim], category index [B], continuous codes [B, continuous]."""
        c = self.config
        noise, one_hot, continuous = latent.split([c.latent_dim, c.categories, c.continuous_codes], 1)
        return noise, one_hot.argmax(1), continuous

    def recognize(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Q(c | x) from trunk features: category logits [B, K] and continuous means [B, continuous]."""
        return self.q_head(features).split([self.config.categories, self.config.continuous_codes], 1)

    def information_losses(self, latent: Tensor, features: Tensor) -> dict[str, Tensor]:
        """-L_I up to the constant H(c): cross-entropy of c_cat plus the weighted Gaussian term of c_cont."""
        _, categories, continuous = self.split_latent(latent)
        logits, means = self.recognize(features)
        categorical = F.cross_entropy(logits, categories)
        continuous_loss = 0.5 * (continuous - means).square().sum(1).mean()
        return {
            "info_loss": categorical + self.config.continuous_weight * continuous_loss,
            # the lower bound on I(c_cat; x) in nats: H(c_cat) - cross-entropy
            "categorical_information_bound": math.log(self.config.categories) - categorical.detach(),
        }

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizer "discriminator": D's trunk and head plus the Q head (the paper's D/Q network); "generator": G."""
        c = self.config
        betas = (c.beta1, c.beta2)
        discriminator_and_q = [*self.discriminator.parameters(), *self.q_head.parameters()]
        return {
            "discriminator": adam(discriminator_and_q, c.lr, betas),
            "generator": adam(self.generator.parameters(), c.generator_lr or c.lr, betas),
        }

    def discriminator_step(self, real: Tensor, fake: Tensor, latent: Tensor) -> dict[str, Tensor]:
        """D's adversarial loss plus L_I of the detached ``fake`` through the trunk and Q head; key "loss"."""
        fake_features = self.discriminator.trunk(fake.detach())
        adversarial = discriminator_loss(
            self.discriminate(real), self.discriminator.head(fake_features).flatten(), self.config.loss
        )
        information = self.information_losses(latent, fake_features)["info_loss"]
        return {"loss": adversarial + information, "discriminator_loss": adversarial, "q_info_loss": information}

    def generator_step(self, latent: Tensor, fake: Tensor) -> dict[str, Tensor]:
        with frozen(self.discriminator, self.q_head):
            features = self.discriminator.trunk(fake)
            adversarial = generator_loss(self.discriminator.head(features).flatten(), self.config.loss)
            information = self.information_losses(latent, features)
        return {"loss": adversarial + information["info_loss"], "generator_loss": adversarial, **information}

    @torch.no_grad()
    def sample(self, n: int, code: int = -1, traverse: str = "") -> Tensor:
        """``code`` in 0..K-1 fixes the categorical code (-1: random). ``traverse`` returns a K x K grid instead
        of n samples: "categorical" (columns: the K categories, rows: K noise draws) or "c1", "c2", ...
        (rows: the K categories, columns: that continuous code from -2 to 2, all else fixed)."""
        k = self.config.categories
        if traverse:
            return self.traversal(traverse)
        if not -1 <= code < k:
            raise GenzooError(f"--code must be in 0..{k - 1} (or -1 for random), got {code}")
        categories = None if code < 0 else torch.full((n,), code)
        return self.generate(self.latent(n, categories=categories))

    @torch.no_grad()
    def traversal(self, code_name: str) -> Tensor:
        """A K x K grid of images (row-major) varying one code; see ``sample``."""
        c, k = self.config, self.config.categories
        names = ["categorical", *(f"c{j + 1}" for j in range(c.continuous_codes))]
        if code_name not in names:
            raise GenzooError(f"--traverse must be one of {', '.join(names)}, got {code_name!r}")
        rows, columns = torch.arange(k).repeat_interleave(k), torch.arange(k).repeat(k)  # [K*K]
        if code_name == "categorical":
            latent = self.latent(k).repeat_interleave(k, 0)  # each row: one draw of z and c_cont
            noise, _, continuous = self.split_latent(latent)
            categories = columns
        else:
            noise, _, continuous = self.split_latent(self.latent(1).expand(k * k, -1))
            continuous = continuous.clone()
            continuous[:, names.index(code_name) - 1] = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, k)[columns]
            categories = rows
        return self.generate_from_codes(noise, categories, continuous)

    @torch.no_grad()
    def generate_from_codes(self, noise: Tensor, categories: Tensor, continuous: Tensor) -> Tensor:
        """Images [B, C, H, W] in [-1, 1] of the given codes: noise z [B, latent_dim], category indices [B] and
        continuous codes [B, continuous] (the prior is U(-1, 1); values beyond it extrapolate, as in Fig. 2)."""
        c = self.config
        if noise.shape[1:] != (c.latent_dim,) or continuous.shape[1:] != (c.continuous_codes,):
            raise GenzooError(f"infogan codes: noise needs {c.latent_dim} values, continuous {c.continuous_codes}")
        if not bool(((categories >= 0) & (categories < c.categories)).all()):
            raise GenzooError(f"infogan categories must be in 0..{c.categories - 1}")
        one_hot = F.one_hot(categories.long(), c.categories).to(noise)
        return self.generate(torch.cat([noise, one_hot, continuous.to(noise)], 1).to(self._device()))

    @torch.no_grad()
    def figures(self, x: Tensor) -> dict[str, Tensor]:
        """One traversal grid per code, written into the run directory at the end of training."""
        names = ["categorical", *(f"c{j + 1}" for j in range(self.config.continuous_codes))]
        return {f"traversal_{name}.png": self.traversal(name) for name in names}

    @torch.no_grad()
    def evaluate(self, x: Tensor, labels: Tensor | None, levels: int, data: str | None = None) -> dict[str, Any]:
        """The sample-quality suite plus categorical-code accuracy: Q's code for real test images matched one to
        one to the labels (``code_accuracy``), and the feature net's class of images generated with each code
        matched to the codes (``generated_code_accuracy``)."""
        from genzoo.metrics.features import load_feature_net
        from genzoo.metrics.sample_quality import code_accuracy

        latent, images, report = self.sample_quality_report(x, data)
        if labels is None:
            return report
        logits = torch.cat([self.recognize(self.discriminator.trunk(part))[0] for part in x.split(EVAL_CHUNK)])
        report["code_accuracy"] = code_accuracy(logits.argmax(1), labels)
        feature_net = load_feature_net(data or self.run_config["data"])
        generated_classes = feature_net.features_and_probabilities(images)[1].argmax(1)
        report["generated_code_accuracy"] = code_accuracy(self.split_latent(latent)[1], generated_classes)
        return report
