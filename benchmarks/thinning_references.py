"""References for CycleGAN's thick -> thin class number: what the class reader gives on hand-made thin versions
of the thick test images of ``mnist-attributes`` (the ones CycleGAN's evaluate translates B -> A).

    GENZOO_DATA_DIR=../shared/data python benchmarks/thinning_references.py

Rows: the thick renderings themselves; the paired truth (the same source digits rendered thin, which no unpaired
translator can see); and a morphological translation that needs no training: the thick rendering's 3x3 dilation
undone by a 3x3 erosion (a closing of the source digit, so holes and gaps the dilation filled stay filled), then
the renderer's 2x2 thinning. Slant, colour and background are rendered as in the data. Each row gives the class
reader's accuracy and the share of images the attribute reader measures as thin.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from genzoo.data import domains, load_dataset
from genzoo.models.translation.base import classifier_for, classify

EVAL_IMAGES = 1000  # CycleGAN's eval_images: the first 1,000 test images


def erode(grey: Tensor) -> Tensor:
    """Grey erosion by a 3x3 square, the inverse step of :func:`domains.thicken` where nothing merged."""
    return -F.max_pool2d(-grey, 3, stride=1, padding=1)


def main() -> None:
    base = load_dataset("mnist")
    view = load_dataset("mnist-attributes")
    sources, labels = base.test[:EVAL_IMAGES], view.test_labels[:EVAL_IMAGES]
    thick = labels[:, 1] == domains.attribute_index("thick")[1]
    sources, labels = sources[thick], labels[thick]
    as_thin = labels[:, 1:].clone()
    as_thin[:, 0] = domains.attribute_index("thin")[1]
    grey = sources.float() / (base.levels - 1)
    closed = (erode(domains.thicken(grey)) * (base.levels - 1)).round().to(sources.dtype)  # max/min keep levels
    rows = {
        "thick renderings (the translator's input)": domains.render(sources, labels[:, 1:], base.levels),
        "paired truth: the same digits rendered thin": domains.render(sources, as_thin, base.levels),
        "morphological: 3x3 erosion, then the 2x2 thinning": domains.render(closed, as_thin, base.levels),
    }
    classifier = classifier_for("mnist-attributes")
    print(f"{int(thick.sum())} thick images among the first {EVAL_IMAGES} test images of mnist-attributes")
    print(f"{'images':52s} {'class read':>10s} {'read thin':>10s}")
    for name, images in rows.items():
        _, predicted = classify(classifier, domains.unit(images))
        thin_share = (domains.read_attributes(images)[:, 0] == 0).float().mean()
        print(f"{name:52s} {float((predicted == labels[:, 0]).float().mean()):10.1%} {float(thin_share):10.1%}")


if __name__ == "__main__":
    main()
