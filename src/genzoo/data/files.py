"""Where data files come from: the data directories, the cache, then a checksummed download.

``GENZOO_DATA_DIR`` (one or more folders, ``:``-separated) is searched first, so machines without network (CI,
benchmarks) can point at local copies; then the cache (``GENZOO_CACHE_DIR``, default ``~/.cache/genzoo``);
then the file is downloaded into the cache, verified and moved into place atomically. ``GENZOO_OFFLINE=1``
forbids downloads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from genzoo.errors import DataUnavailable

DOWNLOAD_TIMEOUT_SECONDS = 30


def data_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get("GENZOO_DATA_DIR", "").split(os.pathsep) if p]


def cache_dir() -> Path:
    return Path(os.environ.get("GENZOO_CACHE_DIR", "~/.cache/genzoo")).expanduser()


def offline() -> bool:
    return os.environ.get("GENZOO_OFFLINE", "").lower() in ("1", "true", "yes")


def find_file(name: str, subdir: str = "") -> Path | None:
    """The first existing ``name`` in the data directories or the cache (also under ``subdir``)."""
    for root in [*data_dirs(), cache_dir()]:
        for candidate in (root / subdir / name, root / name):
            if candidate.is_file():
                return candidate
    return None


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, urls: list[str], md5: str | None, subdir: str) -> Path:
    """A local path to ``name``: found locally, or downloaded into the cache and checked against ``md5``."""
    found = find_file(name, subdir)
    if found is not None:
        return found
    hint = f"place {name} in a folder named by GENZOO_DATA_DIR"
    if offline():
        raise DataUnavailable(f"{name} is not available offline (GENZOO_OFFLINE is set); {hint}")
    target = cache_dir() / subdir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as src:
                while block := src.read(1 << 20):
                    out.write(block)
            if md5 is not None and md5sum(Path(tmp)) != md5:
                raise OSError(f"checksum mismatch for {url}")
            os.replace(tmp, target)
            return target
        except OSError as err:
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataUnavailable(f"could not download {name} ({'; '.join(errors)}); {hint}")
