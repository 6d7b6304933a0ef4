"""Run directories: ``config.json``, ``model.safetensors``, ``metrics.json``, ``samples.png``, ``checkpoints/``.

Every file is written to a temporary name and renamed into place, so a crash at any moment leaves the previous
good version. Weights are safetensors and configs JSON: loading a run never unpickles code.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from genzoo.errors import GenzooError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
SAMPLES = "samples.png"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only once fully written and synced.

    Readers see the old file or the new one, never a torn one; on an exception the old file is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as out:
        out.write(data)


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenzooError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GenzooError(f"{path} is not valid JSON: {err}") from None


def save_weights(model: torch.nn.Module, path: Path) -> None:
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise GenzooError(f"{path} does not exist (was the run finished?)") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise GenzooError(f"{path} is not a valid safetensors file: {err}") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise GenzooError(f"{path} does not match the model in {CONFIG}: {first}") from None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise GenzooError(f"{run_dir} is not a run directory (no such directory)")
    if not (run_dir / CONFIG).is_file():
        raise GenzooError(f"{run_dir} is not a run directory (no {CONFIG})")
    config = read_json(run_dir / CONFIG)
    if not isinstance(config, dict) or not {"model", "image_shape", "settings"} <= config.keys():
        raise GenzooError(f"{run_dir / CONFIG} is not a genzoo run config")
    return config


def new_run_dir(model: str, root: Path = Path("runs")) -> Path:
    """``runs/MODEL``, or ``runs/MODEL-2``, ``-3``... when taken."""
    candidate, index = root / model, 1
    while candidate.exists():
        index += 1
        candidate = root / f"{model}-{index}"
    return candidate
