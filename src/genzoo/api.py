"""The Python API that the CLI wraps: list_models, create, train, load, evaluate, sample_images."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from genzoo import runs
from genzoo.config import build_config, config_to_dict, stored_settings
from genzoo.data import check_dataset_name, load_dataset
from genzoo.data.stream import BatchStream
from genzoo.data.transforms import prepare_test
from genzoo.errors import GenzooError, Interrupted
from genzoo.metrics.features import FeatureNetMissing
from genzoo.models.base import GenerativeModel
from genzoo.registry import models

DEFAULT_EPOCHS = 10
RUN_DIR_ENV = "GENZOO_RUN_DIR"


def list_models() -> list[str]:
    return models.names()


def create(name: str, image_shape: tuple[int, int, int] = (1, 28, 28), **settings: Any) -> GenerativeModel:
    """A new model; ``settings`` are fields of the model's config (strings are parsed, as from ``--set``).

    Refused with one line, before anything is allocated that would not fit: an image shape that is not three
    positive sizes, settings of the wrong type or range, settings that leave a layer empty, or parameters larger
    than the memory available."""
    return _build(name, image_shape, settings, copies=1)


# bytes training holds per parameter byte: the weights, their gradients and Adam's two moments
TRAINING_COPIES = 4


def _build(name: str, image_shape: Any, settings: dict[str, Any], copies: int) -> GenerativeModel:
    cls = models.get(name)
    shape = _check_image_shape(image_shape)
    config = build_config(cls.Config, settings)
    try:
        with ParameterBudget(name, copies):
            model = cls(config, shape)
    except GenzooError:
        raise
    except (RuntimeError, ValueError, TypeError, ArithmeticError, IndexError) as err:
        # a combination of valid settings that the model's layers cannot be built from, said in one line
        raise GenzooError(
            f"cannot build {name} for images {shape} with these settings: {runs.first_detail(err)}"
        ) from None
    empty = next(((key, tuple(p.shape)) for key, p in model.named_parameters() if p.numel() == 0), None)
    if empty is not None:
        raise GenzooError(f"these settings leave {name} a layer of no weights ({empty[0]} has shape {empty[1]})")
    return model


def _check_image_shape(image_shape: Any) -> tuple[int, int, int]:
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else ()
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise GenzooError(f"image_shape must be three positive sizes (channels, height, width), got {image_shape!r}")
    return shape  # type: ignore[return-value]


def available_memory() -> int:
    """Bytes of memory the OS can give this process now without swapping (Linux's MemAvailable)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class ParameterBudget(TorchFunctionMode):
    """Counts the bytes of the tensors a model's constructor creates and stops it, before the allocation that
    would not fit, once they (times ``copies``: training also holds gradients and optimizer moments) exceed the
    memory available. ``--set hidden=100000000`` would otherwise ask for hundreds of GB, or be killed midway."""

    # the factories layers build their parameters with; all take a size as torch.empty does
    FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn})

    def __init__(self, name: str, copies: int) -> None:
        super().__init__()
        self.name, self.copies = name, copies
        self.available = available_memory()
        self.total = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            # its size, nothing allocated (torch.empty: random factories on "meta" take seconds to set up)
            shape = {key: kwargs[key] for key in ("size", "dtype") if key in kwargs}
            self.total += torch.empty(*args, **shape, device="meta").nbytes
            if self.total * self.copies > self.available:
                held = " and their gradients and optimizer state" if self.copies > 1 else ""
                raise GenzooError(
                    f"{self.name} with these settings needs more than {_gigabytes(self.total * self.copies)} for its "
                    f"parameters{held}; this machine has {_gigabytes(self.available)} available"
                )
        return func(*args, **kwargs)


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:.3g} GB"


def load(run_or_name: str | Path) -> GenerativeModel:
    """A trained model: from its run directory if that path exists (JSON config + safetensors weights; nothing is
    unpickled), else the pretrained zoo entry of that name (``genzoo.zoo``)."""
    from genzoo import zoo

    path = Path(run_or_name)
    if not path.exists():
        if zoo.has(str(run_or_name)):
            return zoo.load(str(run_or_name))
        raise zoo.unknown(str(run_or_name))
    config = runs.read_run_config(path)
    model = model_from_config(config)
    runs.load_weights(model, path / runs.WEIGHTS)
    model.eval()
    model.run_config = config
    return model


def model_from_config(config: dict[str, Any]) -> GenerativeModel:
    """A new model as a stored run config describes it (settings it lacks take their values from before they
    were added)."""
    settings = stored_settings(models.get(config["model"]).Config, config["settings"])
    return create(config["model"], tuple(config["image_shape"]), **settings)


def _check_shape(model: GenerativeModel, image_shape: tuple[int, ...], data: str) -> None:
    if tuple(image_shape) != tuple(model.image_shape):
        raise GenzooError(f"{model.name} expects images of shape {model.image_shape}, {data} has {image_shape}")


def evaluate(model: GenerativeModel, data: str | None = None) -> dict[str, Any]:
    """The model's metrics on the test split of ``data`` (default: the data it was trained on)."""
    data = data or getattr(model, "run_config", {}).get("data")
    if data is None:
        raise GenzooError("evaluate needs data= (--data) for a model whose run does not name its dataset")
    dataset = load_dataset(data)
    _check_shape(model, dataset.image_shape, data)
    model.eval()
    x = prepare_test(dataset.test, model.input_kind, dataset.levels)
    metrics = model.evaluate(x, dataset.test_labels, dataset.levels, data=data)
    return {"data": data, "data_source": dataset.source, **metrics}


def sample_images(model: GenerativeModel, n: int, levels: int = 256, **options: Any) -> Tensor:
    """``n`` samples as floats in [0, 1], [n, C, H, W], for display; ``options`` go to the model's ``sample``."""
    from genzoo.viz import to_unit_range

    model.eval()
    with torch.no_grad():
        return to_unit_range(model.sample(n, **options), model.input_kind, levels)


@dataclass
class Run:
    path: Path
    model: GenerativeModel
    metrics: dict[str, Any]


def train(
    model: str,
    data: str | None = None,
    *,
    max_epochs: int | None = None,
    max_steps: int | None = None,
    batch_size: int = 64,
    out: str | Path | None = None,
    seed: int = 0,
    resume: bool = False,
    devices: int | str = 1,
    strategy: str = "auto",
    precision: str | None = None,
    settings: dict[str, Any] | None = None,
    checkpoint_every: int = 100,
    eval_every: int | None = None,
    samples: int = 64,
    progress: bool = True,
    trackers: tuple[str, ...] | list[str] = (),
) -> Run:
    """Train ``model`` on ``data`` (default: the model's ``default_data``) into a run directory;
    ``resume=True`` continues ``out`` from its checkpoint. ``trackers`` adds experiment trackers (``tensorboard``,
    ``wandb``, ``mlflow``; :mod:`genzoo.trackers`) to the CSV log every run keeps. ``eval_every`` also evaluates
    the model on the test split every that many batches, logged as ``test_NAME`` (its learning curve in
    ``curves.png``).

    Every option is checked before any file is written. The run directory is locked for the whole call (a second
    process is refused), and a start that fails before its first checkpoint removes the directory it created.
    SIGINT / SIGTERM stop after the current batch, save the checkpoint and weights and raise :class:`Interrupted`.

    The steps: resolve the run (:func:`_resolve_run`), build the data, model and trainer (:func:`_prepare`), then,
    holding the run's lock, write its config (:func:`_write_config`), fit, and finish it (:func:`_finish`: weights,
    metrics, samples, figures, card).
    """
    _check_counts(max_epochs=max_epochs, max_steps=max_steps, batch_size=batch_size,
                  checkpoint_every=checkpoint_every, eval_every=eval_every, samples=samples)  # fmt: skip
    plan = _resolve_run(model, data, out, seed, batch_size, resume, settings, precision, max_steps, max_epochs)
    dataset, network, trainer = _prepare(
        plan, devices, strategy, checkpoint_every, eval_every, progress, tuple(trackers)
    )

    from genzoo.engine import fit, keep_freed_memory, read_checkpoint

    run_dir = plan.run_dir
    created = not run_dir.exists()
    last = run_dir / runs.CHECKPOINTS / runs.LAST_CHECKPOINT
    with contextlib.nullcontext() if plan.secondary else runs.RunLock(run_dir):
        if not plan.secondary:
            if not resume and runs.holds_trained_state(run_dir):  # again, now that no other process can start here
                raise _already_a_run(run_dir)
            runs.remove_temporaries(run_dir)
        # a run stopped before its first checkpoint resumes from batch 0
        checkpoint = last if resume and last.is_file() else None
        start_batches = 0 if checkpoint is None else read_checkpoint(checkpoint, network)["genzoo"]["batches_done"]
        try:
            _write_config(plan, network, dataset)
            keep_freed_memory()
            stream = BatchStream(
                dataset.train, dataset.train_labels, plan.batch_size, network.input_kind, dataset.levels, plan.seed
            )
            started = time.perf_counter()
            # the run directory, for the worker processes Lightning launches during fit; the caller's environment
            # is restored afterwards (unittest.mock's patch.dict does exactly that)
            with mock.patch.dict(os.environ, {RUN_DIR_ENV: str(run_dir)}):
                adapter = fit(network, stream, trainer, plan.budget["max_steps"], checkpoint, plan.seed)
            seconds = time.perf_counter() - started
        except BaseException:
            if created and not plan.secondary and not last.is_file():
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave no directory behind
            raise
        if not trainer.is_global_zero:
            return Run(run_dir, network, {})
        network = adapter.model.cpu().eval()
        metrics = _finish(plan, network, dataset, trainer, adapter, seconds, start_batches, samples)
    return Run(run_dir, network, metrics)


@dataclass
class _Plan:
    """A training call resolved, before any file is written: where the run lives and every option it trains with
    (a resumed run's own data, seed, batch size, settings, precision and budget)."""

    model: str
    run_dir: Path
    data: str
    seed: int
    batch_size: int
    settings: dict[str, Any]
    precision: str | None
    budget: dict[str, int | None]  # max_steps, max_epochs: stored, so a bare --resume continues toward them
    resume: bool
    secondary: bool  # a DDP worker process re-launched by Lightning (rank 0 owns the run directory)
    stored: dict[str, Any] | None  # the resumed run's config


def _resolve_run(
    model: str,
    data: str | None,
    out: str | Path | None,
    seed: int,
    batch_size: int,
    resume: bool,
    settings: dict[str, Any] | None,
    precision: str | None,
    max_steps: int | None,
    max_epochs: int | None,
) -> _Plan:
    """The run directory and the options a training call resolves to, all checked; nothing is written."""
    spec = models.get(model)
    secondary = _secondary_process()
    stored = None
    if resume:
        if out is None:
            raise GenzooError("--resume needs --out, the run directory to continue")
        run_dir = Path(out)
        stored = runs.read_run_config(run_dir)
        if stored["model"] != model:
            raise GenzooError(f"{run_dir} is a {stored['model']} run, not {model}")
        if not secondary:
            runs.RunLock(run_dir).check_free()
        runs.require(stored, ("data", "seed", "batch_size"), run_dir / runs.CONFIG, "--resume")
        data, seed, batch_size = stored["data"], stored["seed"], stored["batch_size"]
        settings = stored_settings(spec.Config, stored["settings"])
        precision = precision or stored.get("precision")  # a resumed run keeps its precision
        if max_steps is None and max_epochs is None:  # and its budget (runs stored before it was kept: default)
            max_steps, max_epochs = stored.get("max_steps"), stored.get("max_epochs")
    else:
        data = data or spec.default_data
        check_dataset_name(data)
        build_config(spec.Config, settings or {})  # fail on bad settings before the data is loaded
        if secondary:
            # a DDP worker re-launched by Lightning: rank 0 already chose and wrote the run directory
            run_dir = Path(out or os.environ[RUN_DIR_ENV])
        else:
            run_dir = Path(out) if out is not None else runs.new_run_dir(model)
            _check_new_run_dir(run_dir)
    if not 0 <= seed < 2**32:
        raise GenzooError(f"--seed must be between 0 and 2**32 - 1, got {seed}")
    if max_steps is None and max_epochs is None:
        max_steps = spec.default_batches
        max_epochs = DEFAULT_EPOCHS if max_steps is None else None
    budget = {"max_steps": max_steps, "max_epochs": max_epochs}
    return _Plan(model, run_dir, data, seed, batch_size, settings or {}, precision, budget, resume, secondary, stored)


def _prepare(
    plan: _Plan,
    devices: int | str,
    strategy: str,
    checkpoint_every: int,
    eval_every: int | None,
    progress: bool,
    trackers: tuple[str, ...],
) -> tuple[Any, GenerativeModel, Any]:
    """The dataset, the model and the Lightning trainer of a planned run (Lightning checks devices, strategy and
    precision here, still before any file exists)."""
    import lightning as L

    from genzoo.engine import TestCurve, default_precision, make_trainer, quiet_lightning

    dataset = load_dataset(plan.data)
    if len(dataset.train) < plan.batch_size:
        raise GenzooError(f"--batch-size {plan.batch_size} is larger than the {len(dataset.train)} training images")
    plan.precision = plan.precision or default_precision(models.get(plan.model).precision)  # the model's, if native
    L.seed_everything(plan.seed, verbose=False)
    plan.settings = models.get(plan.model).settings_for_data(dataset, plan.settings)
    network = _build(plan.model, dataset.image_shape, plan.settings, TRAINING_COPIES)
    quiet_lightning()
    max_steps, max_epochs = plan.budget["max_steps"], plan.budget["max_epochs"]
    test_curve = None
    if eval_every is not None:
        x = prepare_test(dataset.test, network.input_kind, dataset.levels)
        test_curve = TestCurve(eval_every, x, dataset.test_labels, dataset.levels, plan.data)
    trainer = make_trainer(
        plan.run_dir,
        max_epochs=max_epochs,
        max_batches=max_steps,
        checkpoint_every=checkpoint_every,
        devices=devices,
        strategy=strategy,
        precision=plan.precision,
        progress=progress,
        trackers=trackers,
        test_curve=test_curve,
    )
    if max_steps is not None:  # enough epochs for max_steps batches of the global (all-process) batch
        per_epoch = max(1, len(dataset.train) // (plan.batch_size * trainer.world_size))
        # a resumed run may have epochs counted as finished by an earlier stop: bound by batches, not epochs
        needed = max_steps if plan.resume else -(-max_steps // per_epoch)
        trainer.fit_loop.max_epochs = min(max_epochs or max_steps, needed)
    return dataset, network, trainer


def _write_config(plan: _Plan, network: GenerativeModel, dataset: Any) -> None:
    """A new run's ``config.json``; a resumed one's only when it continues toward a new budget."""
    if plan.secondary:
        return
    if not plan.resume:
        runs.write_json(plan.run_dir / runs.CONFIG, {
            "model": plan.model, "image_shape": list(dataset.image_shape),
            "settings": config_to_dict(network.config), "data": plan.data, "levels": dataset.levels,
            "seed": plan.seed, "batch_size": plan.batch_size, "precision": plan.precision, **plan.budget,
        })  # fmt: skip
    elif {key: plan.stored.get(key) for key in plan.budget} != plan.budget:
        runs.write_json(plan.run_dir / runs.CONFIG, {**plan.stored, **plan.budget})  # resumed with a new budget


def _finish(
    plan: _Plan,
    network: GenerativeModel,
    dataset: Any,
    trainer: Any,
    adapter: Any,
    seconds: float,
    start_batches: int,
    samples: int,
) -> dict[str, Any]:
    """After fit, in the first process: the weights (and, after a signal, :class:`Interrupted`), then the metrics,
    samples, figures and the run's README card. Returns the metrics."""
    from genzoo.engine import BatchClock, GracefulStop
    from genzoo.run_card import write_run_card
    from genzoo.viz import save_grid

    run_dir = plan.run_dir
    runs.save_weights(network, run_dir / runs.WEIGHTS)
    stop = next(c for c in trainer.callbacks if isinstance(c, GracefulStop))
    if stop.signum is not None:
        raise Interrupted(
            f"interrupted by {signal.Signals(stop.signum).name} after batch {adapter.batches_done}; its checkpoint "
            f"and {runs.WEIGHTS} are saved; resume with: genzoo train {plan.model} --out {run_dir} --resume",
            stop.signum,
        )
    trained = adapter.batches_done - start_batches
    clock = next(c for c in trainer.callbacks if isinstance(c, BatchClock))
    # steady rate after the session's first batch; a one-batch session has only its wall time
    seconds_per_batch = clock.seconds_per_batch() or seconds / max(trained, 1)
    try:
        metrics = evaluate(network, plan.data)
    except FeatureNetMissing as err:  # a user's own images: keep the trained run, say what could not be measured
        metrics = {"data": plan.data, "evaluation_skipped": str(err)}
    t0 = time.perf_counter()
    images = sample_images(network, samples, dataset.levels)
    sample_seconds = time.perf_counter() - t0
    save_grid(images, run_dir / runs.SAMPLES, scale=max(1, 56 // dataset.image_shape[-1]))
    _save_figures(network, dataset, run_dir)
    metrics.update(
        model=plan.model,
        train_batches=adapter.batches_done,
        train_images_per_second=plan.batch_size * trainer.world_size / max(seconds_per_batch, 1e-9),
        train_seconds=seconds,
        train_precision=trainer.precision,  # the model's preference falls back to fp32 off native bf16
        train_threads=torch.get_num_threads(),
        sample_seconds=sample_seconds,
        samples=samples,
    )
    runs.write_json(run_dir / runs.METRICS, metrics)
    parameters = sum(p.numel() for p in network.parameters())
    # the levels of the data trained on, not read back: a resumed run's stored config may have lost them
    config = {**runs.read_run_config(run_dir), "levels": dataset.levels}
    write_run_card(run_dir, config, metrics, parameters, trainer.world_size, dataset.source)
    return metrics


def _check_counts(**counts: int | None) -> None:
    """Budgets and sizes given as options: each absent (None) or at least 1."""
    for name, value in counts.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise GenzooError(f"--{name.replace('_', '-')} must be at least 1, got {value!r}")


def _check_new_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise GenzooError(f"--out {run_dir} exists and is not a directory")
    runs.RunLock(run_dir).check_free()
    if runs.holds_trained_state(run_dir):
        raise _already_a_run(run_dir)


def _already_a_run(run_dir: Path) -> GenzooError:
    return GenzooError(f"{run_dir} already holds a run; pass --resume to continue it or another --out")


def _save_figures(network: GenerativeModel, dataset: Any, run_dir: Path) -> None:
    """The extra PNG grids a model offers through ``figures`` (reconstructions, traversals, translations)."""
    from genzoo.viz import save_grid, to_unit_range

    spread = torch.linspace(0, len(dataset.test) - 1, min(64, len(dataset.test))).long()  # test sets may be sorted
    x = prepare_test(dataset.test[spread], network.input_kind, dataset.levels)
    for filename, images in network.figures(x).items():
        columns = None
        if images.dim() == 5:  # [rows, columns, C, H, W]: a grid of that layout
            columns, images = images.shape[1], images.flatten(0, 1)
        shown = to_unit_range(images, network.input_kind, dataset.levels)
        save_grid(shown, run_dir / filename, columns, scale=max(1, 56 // dataset.image_shape[-1]))


def _secondary_process() -> bool:
    """True in every process of a multi-process run except the first (rank 0 of node 0)."""
    return any(int(os.environ.get(name, "0")) > 0 for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))
