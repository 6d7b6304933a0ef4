"""Run directories: ``config.json``, ``model.safetensors``, ``metrics.json``, ``samples.png``, ``checkpoints/``.

Every file is written to a temporary name and renamed into place, so a crash at any moment leaves the previous
good version. Weights are safetensors and configs JSON: loading a run never unpickles code, and every field and
tensor read back is checked, so a damaged file is one readable error. One process at a time trains in a run
directory (:class:`RunLock`).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
import time
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
LOCK = ".lock"
TEMPORARY_SUFFIX = ".tmp"
RUN_FILE_PREFIXES = tuple(f".{name}." for name in (CONFIG, WEIGHTS, METRICS, SAMPLES, LAST_CHECKPOINT))


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; done once, at import, before any thread runs
    os.umask(mask)
    return mask


# mkstemp creates its files 0600; a run's files get the mode any file the user creates gets (0644 usually), so
# others sharing a results folder can read them
FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """A binary file handle whose content replaces ``path`` only once fully written and synced.

    Readers see the old file or the new one, never a torn one; on an exception the old file is untouched. A file
    system that refuses the write (full, read-only, over a size limit) is a :class:`GenzooError` naming the file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        raise GenzooError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise GenzooError(f"cannot write {path}: {err.strerror or err} (any earlier version is kept)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files of writes that were killed before their rename (``kill -9`` mid-checkpoint);
    only safe while holding the run's lock, when no write of another process can be under way."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINTS):
        for path in folder.glob(".*") if folder.is_dir() else ():
            # genzoo's temporaries end in .tmp; those of earlier versions are ".NAME.<random>" of a run file
            if path.name.endswith(TEMPORARY_SUFFIX) or path.name.startswith(RUN_FILE_PREFIXES):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


class RunLock:
    """An exclusive OS lock on a run directory (``flock`` on ``DIR/.lock``), created if needed, held by one
    training process from before its config is written until its last file is; the kernel releases it when the
    process dies, however it dies. A second process is refused with the holder's pid.

    Hand-written rather than the ``filelock`` package: that one truncates the lock file before trying the lock,
    which would erase the pid a refused process reports.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise self._in_use(holder) from None
                # the holder before us may have deleted the file between our open and our lock: lock what is there
                if _same_file(fd, self.path):
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as err:
            raise GenzooError(f"cannot use {self.run_dir} as a run directory: {err.strerror or err}") from None
        self.fd = fd
        return self

    def check_free(self) -> None:
        """Fail now, before any work, if another process holds the lock (taking it comes later)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return  # no lock file: nobody holds it (or the directory cannot be used, which taking it reports)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._in_use(_read_pid(fd)) from None
        finally:
            os.close(fd)  # also releases the lock if it was free

    def _in_use(self, holder: str) -> GenzooError:
        advice = "wait for it to finish or pass another --out"
        return GenzooError(f"{self.run_dir} is in use by another genzoo process (pid {holder}); {advice}")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked, so no one locks the file being deleted
            os.close(self.fd)
            self.fd = None


def _read_pid(fd: int) -> str:
    """The pid a lock holder wrote into the lock file; it writes it just after locking, so wait a moment for it."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.05)
    return "unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as out:
        out.write(data)


def json_text(value: Any, indent: int | None = 2) -> str:
    """Strict JSON (which has no NaN or Infinity): a non-finite number is written as null, and a dict lists the
    keys that held one under ``"non_finite"``, so the file stays readable by any JSON parser and says why."""
    replaced: list[str] = []

    def finite(item: Any, key: str) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            replaced.append(key)
            return None
        if isinstance(item, dict):
            return {k: finite(v, f"{key}.{k}" if key else str(k)) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [finite(v, key) for v in item]
        return item

    value = finite(value, "")
    if replaced and isinstance(value, dict):
        value["non_finite"] = sorted(set(replaced))
    return json.dumps(value, indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json_text(value) + "\n").encode())


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
    """Load ``path`` into ``model``: the same tensors in the same dtypes, and every value finite."""
    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise GenzooError(f"{path} does not exist (was the run finished?)") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise GenzooError(f"{path} is not a valid safetensors file: {err}") from None
    check_tensors(tensors, model.state_dict(), path)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise GenzooError(f"{path} does not match the model in {CONFIG}: {first_detail(err)}") from None


def check_tensors(tensors: dict[str, Any], expected: dict[str, torch.Tensor], path: Path) -> None:
    """The stored ``tensors`` have the dtypes of the model's ``expected`` state (nothing is cast silently) and
    hold only finite values (a diverged or damaged run is named, not sampled into noise)."""
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise GenzooError(f"{path}: {key} is not a tensor")
        if key in expected and value.dtype != expected[key].dtype:
            raise GenzooError(f"{path}: {key} is stored as {value.dtype}, the model holds {expected[key].dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise GenzooError(f"{path} holds non-finite weights ({key} has NaN or infinite values)")


def first_detail(err: BaseException) -> str:
    """The informative line of a multi-line torch error (its first line is a generic heading)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)


def _count(minimum: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


# every field a run's config.json may hold: (check, what it must be); the first three are required
CONFIG_FIELDS: dict[str, tuple[Any, str]] = {
    "model": (lambda v: isinstance(v, str), "a model name"),
    "image_shape": (lambda v: isinstance(v, list) and len(v) == 3 and all(map(_count(1), v)),
                    "three positive integers [C, H, W]"),
    "settings": (lambda v: isinstance(v, dict), "an object of model settings"),
    "data": (lambda v: isinstance(v, str) and v != "", "a dataset name"),
    "levels": (_count(2), "an integer of at least 2"),
    "seed": (_count(0), "an integer of at least 0"),
    "batch_size": (_count(1), "an integer of at least 1"),
    "precision": (lambda v: isinstance(v, str), "a Lightning precision name"),
    "max_steps": (lambda v: v is None or _count(1)(v), "null or an integer of at least 1"),
    "max_epochs": (lambda v: v is None or _count(1)(v), "null or an integer of at least 1"),
}  # fmt: skip
REQUIRED_FIELDS = ("model", "image_shape", "settings")


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run's ``config.json``, every field it holds checked; the fields only some commands need (``data``,
    ``seed``, ...) are required by those, with :func:`require`."""
    if run_dir.is_file():
        raise GenzooError(f"{run_dir} is a file, not a run directory (the folder holding {CONFIG} and {WEIGHTS})")
    if not run_dir.is_dir():
        raise GenzooError(f"{run_dir} is not a run directory (no such directory)")
    if not (run_dir / CONFIG).is_file():
        raise GenzooError(f"{run_dir} is not a run directory (no {CONFIG})")
    path = run_dir / CONFIG
    config = read_json(path)
    if not isinstance(config, dict):
        raise GenzooError(f"{path} is not a genzoo run config (not a JSON object)")
    require(config, REQUIRED_FIELDS, path, "a run")
    for key, (valid, what) in CONFIG_FIELDS.items():
        if key in config and not valid(config[key]):
            raise GenzooError(f"{path}: {key} must be {what}, got {json.dumps(config[key])[:60]}")
    return config


def require(config: dict[str, Any], keys: tuple[str, ...], path: Path, purpose: str) -> None:
    """Fail with one line if the run config at ``path`` lacks a field that ``purpose`` needs."""
    missing = [key for key in keys if key not in config]
    if missing:
        raise GenzooError(f"{path} has no {', '.join(missing)}, which {purpose} needs")


def holds_trained_state(run_dir: Path) -> bool:
    """Whether a run directory holds anything trained (a checkpoint or weights); one without either (a start
    that failed or was killed before its first checkpoint) can be started afresh or resumed from batch 0."""
    return (run_dir / CHECKPOINTS / LAST_CHECKPOINT).is_file() or (run_dir / WEIGHTS).is_file()


def new_run_dir(model: str, root: Path = Path("runs")) -> Path:
    """``runs/MODEL``, or ``runs/MODEL-2``, ``-3``... when taken."""
    candidate, index = root / model, 1
    while candidate.exists():
        index += 1
        candidate = root / f"{model}-{index}"
    return candidate
