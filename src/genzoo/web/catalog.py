"""The models a server shows: each loaded once at start, known to clients only by an id the server chose.

A client never names a file: ids are zoo names or run-directory names made URL-safe (and unique), and every
request's model id is looked up here, so ``../../etc/passwd`` is just an unknown id.
"""

from __future__ import annotations

import inspect
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genzoo.errors import GenzooError
from genzoo.models.base import GenerativeModel
from genzoo.run_card import headline_metric, paper_of

# page -> title, in the lecture's order
PAGES: dict[str, str] = {
    "gallery": "Gallery",
    "likelihood": "Likelihood",
    "latent": "Latent",
    "infogan": "InfoGAN",
    "text2image": "Text to image",
    "translation": "Translation",
    "puzzlegan": "Puzzle-GAN",
    "progan": "Progressive GAN",
}


def page_of(model: GenerativeModel) -> str:
    """The page that explores ``model`` beyond the gallery ("gallery" for plain GANs)."""
    if model.name in ("infogan", "text2image", "puzzlegan", "progan"):
        return model.name
    if model.family in ("likelihood", "latent", "translation"):
        return model.family
    return "gallery"


@dataclass
class Entry:
    id: str
    model: GenerativeModel
    card: dict[str, Any]  # a zoo entry's card; for a run: its model, config and metrics
    lock: threading.Lock = field(default_factory=threading.Lock)  # one computation per model at a time

    @property
    def page(self) -> str:
        return page_of(self.model)

    @property
    def levels(self) -> int:
        return int(self.model.run_config.get("levels", 256))

    def summary(self) -> dict[str, Any]:
        """What pages and clients know of the model: names, shapes and the controls its page offers."""
        model = self.model
        return {
            "id": self.id,
            "model": model.name,
            "family": model.family,
            "page": self.page,
            "paper": paper_of(model.name),
            "data": model.run_config.get("data", ""),
            "image_shape": list(model.image_shape),
            "headline": headline(self.card),
            "controls": controls(model),
        }


def headline(card: dict[str, Any]) -> str:
    """One metric to show beside the model, e.g. "nll_nats 88.41"."""
    chosen = card.get("headline") or {}
    metrics = card.get("metrics") or {}
    if not chosen.get("metric"):
        metric = headline_metric(metrics)
        chosen = {"metric": metric, "value": metrics.get(metric)}
    value = chosen.get("value")
    if chosen.get("metric") is None or not isinstance(value, (int, float)):
        return ""
    return f"{chosen['metric']} {value:.4g}"


def controls(model: GenerativeModel) -> dict[str, Any]:
    """The settings a model's page needs to draw its controls."""
    page = page_of(model)
    options = inspect.signature(model.sample).parameters
    if page == "likelihood":
        return {"completion": "conditioned_on" in options, "methods": ["fast", "naive"] if "method" in options else []}
    if page == "latent":
        return {"latent_dim": model.latent_dim, "manifold": model.latent_dim == 2}
    if page == "infogan":
        from genzoo.models.adversarial.infogan import TRAVERSAL_RANGE

        config = model.config
        return {"categories": config.categories, "continuous": config.continuous_codes, "range": TRAVERSAL_RANGE}
    if page == "text2image":
        return {"vocabulary": [w for w in model.words if not w.startswith("<")], "open": open_vocabulary(model)}
    if page == "translation":
        if model.name == "cyclegan":
            domains = {"A": model.config.domain_a, "B": model.config.domain_b}
            return {"targets": [{"value": value, "label": label} for value, label in domains.items()]}
        if model.named_attributes:  # each attribute set, cleared (-NAME) or kept
            return {"groups": {name: [name, f"-{name}"] for name in model.config.attributes}}
        from genzoo.data.domains import ATTRIBUTE_GROUPS

        return {"groups": {group: list(values) for group, values in ATTRIBUTE_GROUPS.items()}}
    if page == "puzzlegan":
        return {"patch_count": model.config.patch_count, "patch_size": model.config.patch_size}
    if page == "progan":
        level, alpha = model.stage()
        return {"resolutions": [4 * 2**i for i in range(level + 1)], "alpha": alpha}
    return {}


def open_vocabulary(model: GenerativeModel) -> bool:
    """True when a text-to-image model learnt users' own captions (words beyond its closed list were trained as
    hashed ids); a model of attribute captions knows only its word list."""
    return int(model.example_count) > 0 and model.config.hashed_words > 0


class Catalog:
    """The served models by id, in the order given."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = {entry.id: entry for entry in entries}

    @classmethod
    def load(cls, sources: list[str]) -> Catalog:
        """Each source is a run directory (a path that exists) or a zoo name, as ``genzoo.load`` takes them."""
        import genzoo
        from genzoo import zoo

        entries: list[Entry] = []
        taken: set[str] = set()
        for source in sources:
            model = genzoo.load(source)
            if Path(source).exists():
                card = run_card(Path(source), model)
                base = url_safe(Path(source).resolve().name)
            else:
                card, base = zoo.card(source), url_safe(source)
            entry_id, number = base, 1
            while entry_id in taken:
                number += 1
                entry_id = f"{base}-{number}"
            taken.add(entry_id)
            entries.append(Entry(entry_id, model, card))
        return cls(entries)

    def get(self, entry_id: str) -> Entry:
        if entry_id not in self.entries:
            raise KeyError(entry_id)
        return self.entries[entry_id]

    def on_page(self, page: str) -> list[Entry]:
        return [entry for entry in self.entries.values() if page == "gallery" or entry.page == page]

    def ids(self) -> list[str]:
        return list(self.entries)


def url_safe(name: str) -> str:
    """Letters, digits, ``_ . -`` only, never starting with a dot (so never ``..``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).lstrip(".-")
    return cleaned or "run"


def run_card(run_dir: Path, model: GenerativeModel) -> dict[str, Any]:
    """A run directory's card: its model, config and metrics (no paths)."""
    from genzoo import runs

    metrics_path = run_dir / runs.METRICS
    try:
        metrics = runs.read_json(metrics_path) if metrics_path.is_file() else {}
    except GenzooError:
        metrics = {}
    return {"model": model.name, "family": model.family, "config": model.run_config, "metrics": metrics}
