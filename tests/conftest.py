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


# tiny runs of every model family the web explorer has a page for (seconds in all), shared by its tests
WEB_RUNS = {
    "nade": ("digits", {"hidden": 8}),
    "pixelcnn": ("digits", {"layers": 1, "hidden": 4, "head": 8}),
    "vae": ("digits", {"latent": 2, "hidden": 16, "eval_k": 10}),
    "aae": ("digits", {"latent": 4, "hidden": 16}),
    "gan": ("digits", {"latent_dim": 8, "eval_samples": 50}),
    "infogan": ("digits", {"latent_dim": 4, "eval_samples": 50}),
    "text2image": (
        "mnist-attributes",
        {
            "width": 8,
            "latent_dim": 8,
            "text_dim": 8,
            "compressed_dim": 4,
            "word_dim": 8,
            "eval_images": 20,
            "text_pretrain_batches": 1,
        },
    ),
    "cyclegan": (
        "mnist-attributes",
        {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4, "eval_images": 20},
    ),
    "stargan": (
        "mnist-attributes",
        {"generator_width": 4, "residual_blocks": 1, "discriminator_width": 4, "eval_images": 20},
    ),
    "puzzlegan": ("digits", {"width": 8, "part_features": 8, "latent_dim": 8, "eval_samples": 20, "patch_size": 3}),
    "progan": ("digits", {"max_channels": 8, "latent_dim": 8, "eval_samples": 50, "phase_images": 8, "resolution": 8}),
}


@pytest.fixture(scope="session")
def web_runs(tmp_path_factory):
    """Run directories of 2-batch trainings, one per model of WEB_RUNS, by model name."""
    import genzoo

    root = tmp_path_factory.mktemp("web-runs")
    for name, (data, settings) in WEB_RUNS.items():
        genzoo.train(name, data, max_steps=2, batch_size=8, out=root / name, settings=settings, progress=False,
                     samples=4)  # fmt: skip
    return {name: root / name for name in WEB_RUNS}
