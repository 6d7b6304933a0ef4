"""A small per-dataset classifier whose features stand in for Inception's in every sample-quality metric.

Inception-v3 weights cannot be downloaded here, and an ImageNet network is a poor judge of 28x28 grey digits
anyway, so genzoo follows the usual offline practice: a small CNN trained on the dataset's own labels (the recipe
is :func:`train_feature_net`, run by ``genzoo metrics train-features --data NAME``), shipped as a small
safetensors file next to a JSON card with its test accuracy. Its 128-d penultimate activations are the feature
space of the Fréchet distance, KID and precision/recall; its class probabilities give the Inception-Score analogue.

Where the nets live: the shipped ones in the package (``weights_dir``); the ones a user trains for other datasets
in ``GENZOO_CACHE_DIR/features`` (``user_weights_dir``, the command's default output, since the installed package
may be read-only and is replaced on upgrade). Lookup takes the shipped net first, so a net trained by hand cannot
silently change the numbers of a dataset that has a published one; a report names any user-trained net by its path.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from genzoo.errors import GenzooError

FEATURE_DIM = 128
SHIFT_PIXELS = 2  # training augmentation: random translations of up to this many pixels


class FeatureNet(nn.Module):
    """Images in [0, 1] [B, C, H, W] -> 128-d features (``features``) and class logits (``forward``)."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 14x14 for 28x28 images
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),  # 7x7
            nn.ReLU(),
            nn.Conv2d(128, 128, 3, stride=2, padding=1),  # 4x4
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),  # keeps where strokes are (a global pool loses it), any input size
            nn.Flatten(),
            nn.Linear(128 * 16, FEATURE_DIM),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(FEATURE_DIM, classes)

    def features(self, images: Tensor) -> Tensor:
        return self.trunk(images * 2 - 1)  # [B, 128]

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))


@dataclass
class LoadedFeatureNet:
    """A trained feature net and its card (dataset, test accuracy, recipe)."""

    name: str
    net: FeatureNet
    card: dict

    @property
    def multi_label(self) -> bool:
        """Whether the net scores independent attributes (sigmoids) rather than one class (a softmax)."""
        return bool(self.card.get("multi_label", False))

    @torch.no_grad()
    def features_and_probabilities(self, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
        """Images in [0, 1] -> float64 features [N, 128] and class probabilities [N, K] (per attribute for a
        multi-label net)."""
        features, probabilities = [], []
        for chunk in images.float().split(batch_size):
            f = self.net.features(chunk)
            features.append(f.double())
            logits = self.net.classifier(f)
            probabilities.append((torch.sigmoid(logits) if self.multi_label else F.softmax(logits, -1)).double())
        return torch.cat(features), torch.cat(probabilities)


def weights_dir() -> Path:
    """The package's shipped feature nets."""
    return Path(str(resources.files("genzoo.metrics") / "weights"))


def user_weights_dir() -> Path:
    """Feature nets a user trained (``genzoo metrics train-features`` writes here unless told otherwise)."""
    from genzoo.data.files import cache_dir

    return cache_dir() / "features"


def _safe_name(data: str) -> str:
    return data.replace("/", "_").replace(":", "_")


_cache: dict[Path, LoadedFeatureNet] = {}


class FeatureNetMissing(GenzooError):
    """No feature net for a dataset: sample metrics cannot be computed (training itself is unaffected)."""


def load_feature_net(data: str, directory: Path | None = None) -> LoadedFeatureNet:
    """The feature net for dataset ``data``: from ``directory`` when given, else the shipped one (``mnist``,
    ``fashion-mnist``), else one the user trained into :func:`user_weights_dir`."""
    name = f"{_safe_name(data)}.safetensors"
    folders = [directory] if directory else [weights_dir(), user_weights_dir()]
    path = next((folder / name for folder in folders if (folder / name).is_file()), None)
    if path is None:
        shipped = sorted(p.stem for p in weights_dir().glob("*.safetensors"))
        raise FeatureNetMissing(
            f"no feature net for {data!r} (shipped: {', '.join(shipped) or 'none'}; none in "
            f"{user_weights_dir()}); train one with: genzoo metrics train-features --data {data}"
        )
    if path not in _cache:
        card = json.loads(path.with_suffix(".json").read_text())
        net = FeatureNet(card["channels"], card["classes"])
        net.load_state_dict(load_file(path))
        shipped = path.parent == weights_dir()
        _cache[path] = LoadedFeatureNet(f"genzoo-features/{data}" + ("" if shipped else f" ({path})"), net.eval(), card)
    return _cache[path]


@torch.no_grad()
def accuracy(net: FeatureNet, images: Tensor, labels: Tensor, levels: int | None = None) -> float:
    """Share of test images classified right: images in [0, 1], or uint8 with ``levels`` grey levels (converted a
    chunk at a time, so a large colour set is never held as floats). Multi-label sets (labels [N, K] of 0/1, e.g.
    CelebA's 40 attributes): the mean over attributes of the share right."""
    net.eval()
    correct = 0.0
    for x, y in zip(images.split(1000), labels.split(1000)):
        logits = net(x.float() / (levels - 1) if levels else x)
        hits = (logits > 0) == y.bool() if y.dim() == 2 else logits.argmax(1) == y
        correct += float(hits.float().mean(1).sum() if y.dim() == 2 else hits.sum())
    return correct / len(labels)


def train_feature_net(
    data: str, epochs: int = 8, batch_size: int = 128, lr: float = 2e-3, seed: int = 0
) -> tuple[FeatureNet, dict]:
    """The recipe of the shipped weights: Adam with a cosine schedule, random shifts, on the train split only.
    Class labels train a softmax classifier; attribute rows (labels [N, K] of 0/1) one sigmoid per attribute."""
    from genzoo.data import load_dataset
    from genzoo.data.transforms import random_shift
    from genzoo.models.base import adam

    dataset = load_dataset(data)
    if dataset.train_labels is None:
        raise GenzooError(f"{data} has no labels to train a feature classifier on")
    multi_label = dataset.train_labels.dim() == 2
    classes = dataset.train_labels.shape[1] if multi_label else dataset.num_classes or 10
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    scale = dataset.levels - 1
    net = FeatureNet(dataset.image_shape[0], classes)
    optimizer = adam(net.parameters(), lr)
    steps = epochs * -(-len(dataset.train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    started = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(dataset.train), generator=generator)
        for index in order.split(batch_size):
            images = random_shift(dataset.train[index].float() / scale, SHIFT_PIXELS, generator)
            logits, labels = net(images), dataset.train_labels[index]
            if multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    card = {
        "data": data,
        "data_source": dataset.source,
        "channels": dataset.image_shape[0],
        "classes": classes,
        "multi_label": multi_label,
        "image_shape": list(dataset.image_shape),
        "test_accuracy": accuracy(net, dataset.test, dataset.test_labels, dataset.levels),
        "test_images": len(dataset.test),
        "train_images": len(dataset.train),
        "recipe": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "shift_pixels": SHIFT_PIXELS},
        "train_seconds": round(time.perf_counter() - started, 1),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    return net.eval(), card


def save_feature_net(net: FeatureNet, card: dict, directory: Path | None = None) -> Path:
    """Write ``DATA.safetensors`` and its card ``DATA.json`` into ``directory`` (default: :func:`user_weights_dir`;
    the shipped nets are regenerated with ``directory=weights_dir()``)."""
    from safetensors.torch import save

    from genzoo.runs import atomic_write_bytes, write_json

    directory = Path(directory or user_weights_dir())
    path = directory / f"{_safe_name(card['data'])}.safetensors"
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in net.state_dict().items()}))
    write_json(path.with_suffix(".json"), card)
    _cache.pop(path, None)
    return path
