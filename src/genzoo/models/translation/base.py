"""Image-to-image translation GANs (CycleGAN, StarGAN) and what they share.

How two unpaired domains reach a model through the generic engine: the attribute datasets of
:mod:`genzoo.data.domains` render every source image once with a multi-label attribute row, and the engine's batch
``{"x": images, "y": [class, thickness, slant, colour, background]}`` already holds images of every domain. A
model splits (CycleGAN) or relabels (StarGAN) the batch by those labels; since no source image appears twice,
the images of two domains never share a source and no pairing leaks. The engine stays unaware of domains.

Data with named 0/1 attributes (:mod:`genzoo.data.attributes`: CelebA, a folder with ``attributes.txt``, the
domains A and B of ``folders:PATH_A,PATH_B``) reach the models the same way, as rows [N, K] without a class
column; :meth:`TranslationModel.settings_for_data` writes the names into the config (``attributes``), so a run
rebuilds its model and parses ``--to`` without the data. Such images have no training-free attribute reader and
no class, so their evaluation is the cycle / reconstruction error, what the models' own classifiers read, and the
Fréchet distance in the data's feature net when one exists (:func:`sample_metric_features`; otherwise the report
says why it is left out).

Shared here: the settings both models have (:class:`TranslationConfig`), the L1 cycle / reconstruction loss, a
persistent buffer of real example images seen in training (``sample`` translates them, so ``genzoo sample RUN`` and
the run's samples.png need no data files), the linear learning-rate decay, the measured evaluation (attributes
read by :func:`genzoo.data.domains.read_attributes`, class by the base dataset's shipped classifier) and
``genzoo translate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genzoo.config import added_later, build_config
from genzoo.data import ImageDataset, split_options
from genzoo.data.domains import base_dataset_of, canonical_grey, read_attributes
from genzoo.data.images import read_image_file
from genzoo.errors import GenzooError
from genzoo.models.base import GenerativeModel, TrainConfig, adam
from genzoo.nn.translation import Normalization

EXAMPLES = 64  # real training images kept in the weights for ``sample``
EVAL_CHUNK = 250
ATTRIBUTE_DATA = (
    "attribute labels [class, thickness, slant, colour, background] (mnist-attributes, fashion-attributes) or "
    "named attributes (folders:PATH_A,PATH_B; celeba; a folder with attributes.txt)"
)


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """Mean absolute error ||F(G(x)) - x||_1 / pixels (CycleGAN eq. 2; StarGAN's L_rec, eq. 4); scalar."""
    return (reconstructed - original).abs().mean()


def with_noise(images: Tensor, std: float) -> Tensor:
    """``images`` with Gaussian noise of ``std`` added (0: unchanged), the defence of Bashkirova et al. (NeurIPS
    2019) against the signal a cycle-consistent generator hides in a translation for its way back."""
    return images + std * torch.randn_like(images) if std else images


def classifier_for(data: str | None) -> Any:
    """The shipped digit / garment classifier of the dataset an attribute view was rendered from, or None."""
    from genzoo.metrics.features import load_feature_net

    if data is None:
        return None
    try:
        return load_feature_net(base_dataset_of(data))
    except GenzooError:
        return None


@torch.no_grad()
def classify(classifier: Any, images: Tensor) -> tuple[Tensor, Tensor]:
    """Images in [0, 1] [N, 3, H, W] -> (features [N, D], predicted classes [N]) read on their grey ink."""
    features, probabilities = classifier.features_and_probabilities(canonical_grey(images))
    return features, probabilities.argmax(1)


@dataclass
class TranslationConfig(TrainConfig):
    """Settings both translation models have (the papers': ResNet generators, Adam(2e-4, 0.5, 0.999), a rate
    decaying linearly to 0 over the second half of training)."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    generator_width: int = 16
    residual_blocks: int = 3
    downsamplings: int = added_later(1, before=2)  # stride-2 convolutions down (and up) in a generator; the papers: 2
    generator_normalization: Normalization = added_later("batch", before="instance")  # the papers: instance
    discriminator_width: int = 32
    decay_fraction: float = 0.5  # the rates decay linearly to 0 over the second half of --max-steps
    ema_decay: float = 0.0  # > 0: translations and evaluation use this average of the generators' weights
    eval_images: int = 1000  # test images (from the start of the split) that evaluate uses
    # the data's named 0/1 attributes, filled in from the data (celeba?attributes=..., a folder's attributes.txt,
    # A and B of folders:); empty: the attribute groups of mnist-attributes / fashion-attributes
    attributes: tuple[str, ...] = ()


class TranslationModel(GenerativeModel):
    """A translation GAN on attribute-labelled images in [-1, 1]; keeps ``EXAMPLES`` real images for ``sample``.

    A subclass defines ``Config`` (a :class:`TranslationConfig`), ``__init__`` (its generators and
    discriminators), ``configure_optimizers`` (optimizers named "generator" and "discriminator", built with
    :meth:`adam`), ``training_step`` (call :meth:`check_labels` and :meth:`remember_examples` on the batch),
    ``translate(images, to)`` and ``evaluate``. It gets ``sample`` material (:meth:`stored_examples`),
    and ``genzoo translate``; both optimizers follow the config's ``decay_fraction`` (CycleGAN's schedule).
    """

    family = "translation"
    input_kind = "signed"
    default_data = "mnist-attributes"  # needs the attribute labels of the derived views
    Config = TranslationConfig

    def __init__(self, config: TranslationConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(config, image_shape)
        self.register_buffer("examples", torch.zeros(EXAMPLES, *self.image_shape))
        self.register_buffer("example_count", torch.zeros((), dtype=torch.long))

    def remember_examples(self, images: Tensor) -> None:
        """Fill the example buffer with the first real training images seen."""
        count = int(self.example_count)
        if count < EXAMPLES:
            taken = images[: EXAMPLES - count].detach()
            self.examples[count : count + len(taken)] = taken.to(self.examples)
            self.example_count += len(taken)

    def stored_examples(self, n: int) -> Tensor:
        count = int(self.example_count)
        if count == 0:
            raise GenzooError(f"{self.name} has seen no images yet; train it, or use `genzoo translate`")
        return self.examples[torch.arange(n) % count]

    @classmethod
    def settings_for_data(cls, dataset: ImageDataset, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` with ``attributes`` set to the data's named attributes, if it has them; data without
        them must be an attribute view (labels [class, thickness, slant, colour, background])."""
        config = build_config(cls.Config, settings)
        if dataset.attributes is None:
            if config.attributes:
                raise GenzooError(f"{cls.name}: attributes come from the data, and {dataset.name} names none")
            labels = dataset.train_labels
            if labels is None or labels.dim() != 2 or labels.shape[1] != 5:
                raise GenzooError(f"{cls.name} cannot translate {dataset.name}: {ATTRIBUTE_DATA}")
            return settings
        if config.attributes and tuple(config.attributes) != dataset.attributes:
            base = split_options(dataset.name)[0]
            raise GenzooError(
                f"{cls.name}: attributes {','.join(config.attributes)} are not those of {dataset.name} "
                f"({','.join(dataset.attributes)}); choose them with --data {base}?attributes=NAME,NAME"
            )
        return {**settings, "attributes": dataset.attributes}

    @property
    def named_attributes(self) -> bool:
        """Whether the model translates between named 0/1 attributes (else the digit attribute groups)."""
        return bool(self.config.attributes)

    def check_labels(self, labels: Tensor | None) -> Tensor:
        if self.named_attributes:
            names = self.config.attributes
            if labels is None or labels.dim() != 2 or labels.shape[1] != len(names):
                raise GenzooError(f"{self.name} was built for the attributes {', '.join(names)}; "
                                  f"these labels are not theirs")  # fmt: skip
            return labels
        if labels is None or labels.dim() != 2 or labels.shape[1] != 5:
            raise GenzooError(f"{self.name} needs {ATTRIBUTE_DATA}")
        return labels

    def attribute_values(self, labels: Tensor) -> Tensor:
        """The attribute columns of checked labels, [N, G]: all of them, or all but the digit views' class."""
        labels = self.check_labels(labels)
        return labels if self.named_attributes else labels[:, 1:]

    def adam(self, parameters: Any, lr: float) -> torch.optim.Optimizer:
        return adam(parameters, lr, (self.config.beta1, self.config.beta2))

    def translate(self, images: Tensor, to: str) -> Tensor:
        """Images [B, C, H, W] in [-1, 1] translated to the target named by ``to``."""
        raise NotImplementedError


def read_image(path: Path, image_shape: tuple[int, int, int]) -> Tensor:
    """An image file as one image [1, C, H, W] in [-1, 1], resized to the model's shape (bounded and checked by
    :func:`genzoo.data.images.read_image_file`)."""
    channels, height, width = image_shape
    pixels = read_image_file(path, "RGB" if channels == 3 else "L", (height, width))  # uint8 [H, W, C]
    return torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def translate_file(run: Path, input_image: Path, to: str, out: Path | None = None) -> Path:
    """``genzoo translate``: the input image and its translation side by side in a PNG (default INPUT-to-TO.png)."""
    import genzoo
    from genzoo.viz import save_grid

    model = genzoo.load(run)
    if not isinstance(model, TranslationModel):
        raise GenzooError(f"{run} is a {model.name} run; translate needs cyclegan or stargan")
    image = read_image(Path(input_image), model.image_shape)
    with torch.no_grad():
        translated = model.translate(image, to)
    out = out or Path(input_image).with_name(f"{Path(input_image).stem}-to-{to.replace(',', '-')}.png")
    if out.suffix.lower() != ".png":
        raise GenzooError(f"--out must be a .png file, got {out}")
    pair = (torch.cat([image, translated]) + 1) / 2
    return save_grid(pair.clamp(0, 1), out, columns=2, scale=max(1, 112 // model.image_shape[-1]))


def attribute_report(translated: Tensor, targets: Tensor, groups: list[int], prefix: str) -> dict[str, float]:
    """Share of translated images [N, C, H, W] in [0, 1] whose measured attributes equal ``targets`` [N, G]:
    per named group, jointly over ``groups``, and over the other groups (kept from the source)."""
    measured = read_attributes(translated)
    hits = measured == targets  # [N, G]
    report = {f"{prefix}target_accuracy": float(hits[:, groups].all(1).float().mean())}
    others = [g for g in range(targets.shape[1]) if g not in groups]
    if others:
        report[f"{prefix}other_attributes_kept"] = float(hits[:, others].all(1).float().mean())
    return report


def sample_metric_features(data: str | None) -> tuple[Any, str | None]:
    """(the feature net of ``data`` for the Fréchet distance, or None; why it is missing, or None). The net of a
    dataset with chosen attributes is that of the whole dataset (the images are the same)."""
    from genzoo.metrics.features import FeatureNetMissing, load_feature_net

    if data is None:
        return None, "no dataset named, so no feature net"
    base, options = split_options(data)
    whole = base + (f"?size={options['size']}" if "size" in options else "")
    try:
        return load_feature_net(whole), None
    except FeatureNetMissing as err:
        return None, str(err)


def frechet_distance_in(net: Any, real: Tensor, generated: Tensor) -> float:
    """Fréchet distance of images in [0, 1] [N, C, H, W] in the feature space of ``net``."""
    from genzoo.metrics.sample_quality import frechet_distance_of_features

    return frechet_distance_of_features(
        net.features_and_probabilities(real)[0], net.features_and_probabilities(generated)[0]
    )
