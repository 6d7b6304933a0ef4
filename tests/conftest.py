"""Tests run offline and deterministic: data comes from the embedded sets or GENZOO_DATA_DIR, never the network."""

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

os.environ["GENZOO_OFFLINE"] = "1"
if "GENZOO_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["GENZOO_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """An empty cache and no data directories: what a fresh offline machine sees."""
    monkeypatch.setenv("GENZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GENZOO_DATA_DIR", "")
    from genzoo.data import _loaded

    saved = dict(_loaded)
    _loaded.clear()
    yield tmp_path / "cache"
    _loaded.clear()
    _loaded.update(saved)


@pytest.fixture
def dataset_or_skip():
    """``dataset_or_skip("fashion-mnist")``: the dataset, or the test skips saying why (data that is merely absent
    on this machine, e.g. without Debian's dataset-fashion-mnist, offline, is no failure)."""
    from genzoo.data import load_dataset
    from genzoo.errors import DataUnavailable

    def load(name):
        try:
            return load_dataset(name)
        except DataUnavailable as err:
            pytest.skip(f"{name} is not available here: {err}")

    return load
