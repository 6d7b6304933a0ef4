"""Experiment trackers (``--logger``): Lightning's own loggers, beside the CSV log every run keeps.

The CSV log is always written (the run's curves are drawn from it); ``tensorboard``, ``wandb`` and ``mlflow`` add
Lightning's TensorBoard, Weights & Biases and MLflow loggers. Each is checked before any file exists: a tracker
whose package is missing is one line that says how to install it. Their files go under the run's ``logs/``
unless the tracker's own environment variables point elsewhere (``WANDB_PROJECT``, ``WANDB_MODE=offline``,
``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger

from genzoo.errors import GenzooError

# tracker -> the package it needs and how to install it
TRACKERS = {
    "csv": (None, ""),
    "tensorboard": ("tensorboard", "pip install 'genzoo[tensorboard]'"),
    "wandb": ("wandb", "pip install 'genzoo[wandb]'"),
    "mlflow": ("mlflow", "pip install 'genzoo[mlflow]'"),
}


def check_trackers(names: Iterable[str]) -> list[str]:
    """The trackers asked for (repeated ``--logger`` or commas), each known and installed, without repeats."""
    chosen: list[str] = []
    for name in (part.strip() for item in names for part in str(item).split(",")):
        if name not in TRACKERS:
            raise GenzooError(f"unknown --logger {name!r}; choose from {', '.join(TRACKERS)}")
        package, install = TRACKERS[name]
        if package is not None and importlib.util.find_spec(package) is None:
            raise GenzooError(f"--logger {name} needs the {package} package: {install}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def make_loggers(run_dir: Path, trackers: Iterable[str] = ()) -> list[Logger]:
    """Lightning loggers for one training session: the CSV log, then the trackers asked for."""
    # one numbered folder per training session (logs/csv/version_0, version_1 after a resume, ...): Lightning's
    # loggers overwrite a folder they reuse, and a resumed run must not lose the log of its first session
    csv_logger = CSVLogger(run_dir / "logs", name="csv")
    loggers: list[Logger] = [csv_logger]
    for name in check_trackers(trackers):
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", version=csv_logger.version))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            project = os.environ.get("WANDB_PROJECT", "genzoo")
            loggers.append(WandbLogger(name=run_dir.name, save_dir=run_dir / "logs", project=project))
        elif name == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            loggers.append(
                MLFlowLogger(
                    experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "genzoo"),
                    run_name=run_dir.name,
                    tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
                    save_dir=str(run_dir / "logs" / "mlflow"),
                )
            )
    return loggers


class LogSettings(Callback):
    """Gives every logger the model's name and settings when training starts (a tracker's run then says what it
    trained; the CSV logger writes them to its hparams.yaml)."""

    def on_train_start(self, trainer: L.Trainer, adapter: Any) -> None:
        from genzoo.config import config_to_dict

        model = adapter.model
        name = getattr(model, "name", type(model).__name__)  # registration names it; a model built by hand has none
        settings = {"model": name, "image_shape": list(model.image_shape), **config_to_dict(model.config)}
        for logger in trainer.loggers:
            logger.log_hyperparams(settings)
