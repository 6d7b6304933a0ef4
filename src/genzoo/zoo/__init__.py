"""The pretrained zoo: models trained by genzoo's own commands, shipped in the package, ready to sample at once.

Each entry is ``NAME.safetensors`` (what inference needs: a GAN's generator, not its critic) beside ``NAME.json``,
its card: the model and the run config it was trained with, the data and its provenance, the command that retrains
it, the machine and time it took, the seeds trained, its metrics (``genzoo eval`` on the shipped weights) beside the
paper's number, and the sha256 of the weights. Wherever a run directory is accepted, a path that exists is a run
directory and anything else is looked up here; loading checks the sha256 and never unpickles or downloads.
``benchmarks/zoo.py`` retrains and packs the entries.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from genzoo.errors import GenzooError
from genzoo.models.base import GenerativeModel

ZOO_DIR = Path(__file__).parent


def names() -> list[str]:
    """The shipped entries, sorted."""
    return sorted(path.stem for path in ZOO_DIR.glob("*.json"))


def has(name: str) -> bool:
    return name in names()


def unknown(name: str) -> GenzooError:
    """The error for a name that is neither an existing run directory nor a zoo entry."""
    return GenzooError(
        f"{name!r} is neither a run directory (no such path) nor a zoo entry; zoo entries: {', '.join(names())}"
    )


def card(name: str) -> dict[str, Any]:
    """The entry's card (a JSON object); an unknown name lists the entries."""
    from genzoo.runs import read_json

    if not has(name):
        raise unknown(name)
    value = read_json(ZOO_DIR / f"{name}.json")
    if not isinstance(value, dict) or not {"model", "config", "weights"} <= value.keys():
        raise GenzooError(f"zoo card {name}.json is damaged (no model, config or weights)")
    return value


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_weights(name: str, entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The entry's tensors, after checking the file against the card's sha256."""
    path = ZOO_DIR / entry["weights"]["file"]
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GenzooError(f"zoo weights of {name} cannot be read: {err.strerror or err}") from None
    if hashlib.sha256(data).hexdigest() != entry["weights"]["sha256"]:
        raise GenzooError(f"zoo weights of {name} are damaged: {path.name} does not match its card's sha256")
    try:
        return load_tensors(data)
    except (SafetensorError, ValueError) as err:
        raise GenzooError(f"zoo weights of {name} are not a valid safetensors file: {err}") from None


def load(name: str) -> GenerativeModel:
    """The entry's model in eval mode, with ``run_config`` and ``zoo_card`` set; its training-only modules (not
    shipped) are filled with NaN, so any use of them shows."""
    from genzoo.api import model_from_config

    entry = card(name)
    model = model_from_config(entry["config"])
    tensors = read_weights(name, entry)
    dropped = model.training_only_modules()
    expected = {key for key in model.state_dict() if not _under(key, dropped)}
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise GenzooError(f"zoo weights of {name} do not fit the {entry['model']} model (missing {missing[:3]}, "
                          f"unexpected {extra[:3]})")  # fmt: skip
    state = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key in tensors:
                value.copy_(tensors[key])
            elif value.is_floating_point():
                value.fill_(math.nan)
    model.eval()
    model.run_config = entry["config"]
    model.zoo_card = entry
    return model


def inference_tensors(model: GenerativeModel, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """What the zoo ships of ``model``: its state without the training-only modules, floating tensors in ``dtype``."""
    dropped = model.training_only_modules()
    return {
        key: (value.to(dtype) if value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if not _under(key, dropped)
    }


def _under(key: str, modules: tuple[str, ...]) -> bool:
    return any(key == module or key.startswith(f"{module}.") for module in modules)
