"""The one training engine: a Lightning adapter around any model's ``training_step`` and a Trainer factory.

Models use manual optimization through :class:`LightningStep` (zero-grad, ``manual_backward``, step), so
multi-optimizer models need nothing special and Lightning still handles precision, devices and DDP.
"""

from __future__ import annotations

import ctypes
import io
import logging
import math
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor

from genzoo.curves import CurveRefresh
from genzoo.data.stream import BatchStream
from genzoo.errors import GenzooError
from genzoo.models.base import GenerativeModel, schedule_learning_rates
from genzoo.runs import atomic_write_bytes, check_tensors
from genzoo.trackers import LogSettings, make_loggers


class DivergedError(GenzooError):
    """A loss became NaN or infinite."""


class LightningStep:
    """The :class:`genzoo.models.base.Step` a model sees: named optimizers and the batch counter."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self._adapter = adapter
        self.batch_index = adapter.batches_done
        self.max_batches = adapter.max_batches

    def optimize(self, loss: Tensor, optimizer: str = "model") -> None:
        names = self._adapter.optimizer_names
        if optimizer not in names:
            raise KeyError(f"no optimizer {optimizer!r}; the model configured {names}")
        opts = self._adapter.optimizers()
        opt = opts[names.index(optimizer)] if isinstance(opts, list) else opts
        opt.zero_grad(set_to_none=True)
        self._adapter.manual_backward(loss)
        opt.step()


def batch_seed(seed: int, batch: int, rank: int) -> int:
    """The torch seed of one process for one training batch: distinct per rank, so DDP workers draw different
    GAN noise, dropout masks and penalty mixes instead of copies of each other (all ranks start from the same
    ``seed_everything``), and a pure function of the batch, so a resumed run needs no saved RNG state."""
    return int(np.random.SeedSequence([seed, batch, rank]).generate_state(1, np.uint64)[0] >> 1)


class ModelAdapter(L.LightningModule):
    """Calls the model's training hook with the random state seeded for that batch; checkpoints the batch
    counter so resume is exact."""

    def __init__(self, model: GenerativeModel, max_batches: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.automatic_optimization = False
        self.max_batches = max_batches
        self.seed = seed
        self.batches_done = 0
        self.optimizer_names: list[str] = []
        self.training_started = False  # after Lightning restored a checkpoint, before the first batch
        self.optimizers_by_name: dict[str, torch.optim.Optimizer] = {}
        self.stream: BatchStream | None = None

    def setup(self, stage: str) -> None:
        """The in-memory dataset moves to this process's device once, and batches are built there from then on.
        Here, not in ``on_train_start``: Lightning fetches the first batch between the two."""
        device = self.trainer.strategy.root_device
        if self.stream is not None and self.stream.device != device:
            self.stream.to(device)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        self.optimizers_by_name = self.model.configure_optimizers()
        self.optimizer_names = list(self.optimizers_by_name)
        return list(self.optimizers_by_name.values())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        seed = batch_seed(self.seed, self.batches_done, self.global_rank)
        # the generators this process draws from, not torch.manual_seed: that one also visits every backend and
        # costs a measurable share of a small model's batch (benchmarks/log/speed.md)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        schedule_learning_rates(self.model, self.optimizers_by_name, self.batches_done, self.max_batches)
        logs = {name: float(value) for name, value in self.model.training_step(batch, LightningStep(self)).items()}
        self.batches_done += 1
        bad = [name for name, value in logs.items() if not math.isfinite(value)]
        if bad:
            saver = next((c for c in self.trainer.callbacks if isinstance(c, PeriodicCheckpoint)), None)
            kept = (
                f"the checkpoint of batch {saver.saved_at} is kept"
                if saver is not None and saver.saved_at is not None
                else "no checkpoint had been written"
            )
            raise DivergedError(
                f"training diverged at batch {self.batches_done}: {', '.join(bad)} is not finite; {kept}"
            )
        # only on the batches whose values the loggers write (every log_every_n_steps, and the last): Lightning's
        # log_dict costs a measurable share of a small model's batch (benchmarks/log/speed.md)
        if self.batches_done % self.trainer.log_every_n_steps == 0 or self.batches_done == self.max_batches:
            self.log_dict(logs, prog_bar=True, on_step=True)

    def on_train_start(self) -> None:
        self.training_started = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["genzoo"] = {"batches_done": self.batches_done}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_done = checkpoint["genzoo"]["batches_done"]

    def on_train_end(self) -> None:
        """Under DDP, check that every process ends with the same weights (the promise of all-reduced gradients);
        a mismatch means some update bypassed the gradient synchronization."""
        if self.trainer.world_size == 1:
            return
        sums = torch.stack([p.detach().double().sum() for p in self.model.parameters()])
        lowest, highest = self.all_gather(sums).aminmax(dim=0)
        if not torch.equal(lowest, highest):
            raise GenzooError("data-parallel replicas ended with different weights; the run is not trustworthy")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed; read back with ``weights_only=True`` (no pickled code)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        # serialized in memory first: torch.save's zip writer hides the OS error of a failed write (a full disk
        # is "unexpected pos 19648 vs 19600"), the file write then reports it
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(Path(path), buffer.getbuffer())

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001  (any unpickling failure means: refuse this file)
            if isinstance(err, EOFError):
                reason = "the file is empty or cut short"
            else:
                reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise GenzooError(f"cannot load checkpoint {path}: {reason}") from None


def read_checkpoint(path: Path, model: GenerativeModel) -> dict[str, Any]:
    """A checkpoint of ``model`` checked field by field before Lightning restores it: genzoo's batch counter, the
    model's tensors (names, shapes, dtypes, finite values) and the optimizer and loop states Lightning reads."""
    checkpoint = AtomicCheckpointIO().load_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise GenzooError(f"{path} is not a genzoo checkpoint (not a dictionary)")
    missing = [key for key in ("genzoo", "state_dict", "optimizer_states", "loops") if key not in checkpoint]
    if missing:
        raise GenzooError(f"{path} is not a genzoo checkpoint (no {', '.join(missing)})")
    batches = checkpoint["genzoo"].get("batches_done") if isinstance(checkpoint["genzoo"], dict) else None
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 0:
        raise GenzooError(f"{path}: genzoo.batches_done must be an integer of at least 0, got {batches!r}")
    stored = checkpoint["state_dict"]
    expected = ModelAdapter(model).state_dict()
    if not isinstance(stored, dict) or stored.keys() != expected.keys():
        raise GenzooError(f"{path} holds another model's weights, not the run's {model.name}")
    check_tensors(stored, expected, path)
    for key, value in stored.items():
        if value.shape != expected[key].shape:
            raise GenzooError(
                f"{path}: {key} has shape {tuple(value.shape)}, the run's model {tuple(expected[key].shape)}"
            )
    optimizers = checkpoint["optimizer_states"]
    if not isinstance(optimizers, list) or len(optimizers) != len(model.configure_optimizers()):
        raise GenzooError(f"{path}: optimizer_states does not match the {model.name} model's optimizers")
    if not all(isinstance(state, dict) and {"state", "param_groups"} <= state.keys() for state in optimizers):
        raise GenzooError(f"{path}: optimizer_states are not optimizer states")
    if not isinstance(checkpoint["loops"], dict):
        raise GenzooError(f"{path}: loops is not Lightning's loop state")
    return checkpoint


class PeriodicCheckpoint(Callback):
    """Saves ``path`` every ``every`` batches and at the end of training (unless that batch was just saved)."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self.saved_at: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, adapter: ModelAdapter, *args: Any) -> None:
        if adapter.batches_done % self.every == 0:
            self.save(trainer, adapter)

    def on_train_end(self, trainer: L.Trainer, adapter: ModelAdapter) -> None:
        if self.saved_at != adapter.batches_done:
            self.save(trainer, adapter)

    def save(self, trainer: L.Trainer, adapter: ModelAdapter) -> None:
        trainer.save_checkpoint(self.path)
        self.saved_at = adapter.batches_done


class GracefulStop(Callback):
    """SIGINT (Ctrl-C) and SIGTERM stop training after the batch under way, whose checkpoint is written; ``signum``
    tells the caller it was asked to stop.

    Installed by :func:`fit` around Lightning's fit and again when training starts, because Lightning registers
    its own SIGTERM handler during setup (it turns SIGTERM into a silent exit 0) and lets Ctrl-C end the process
    with exit 1. Only for one process in the main thread: the processes of a data-parallel run would stop at
    different batches and wait for each other forever, so Lightning's own handling stays there.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            previous = signal.signal(signum, self._request)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _request(self, signum: int, frame: object) -> None:
        self.signum = signum

    def on_train_start(self, trainer: L.Trainer, adapter: ModelAdapter) -> None:
        if not self._previous:  # not installed: a data-parallel run
            return
        self.install()
        if trainer.received_sigterm:  # came during Lightning's setup, to its handler
            self.signum = signal.SIGTERM
        self.on_train_batch_end(trainer, adapter)

    def on_train_batch_end(self, trainer: L.Trainer, adapter: ModelAdapter, *args: Any) -> None:
        if self.signum is None:
            return
        trainer.should_stop = True
        # saved here, like the periodic checkpoints, not when training ends: Lightning's loop state after its end
        # resumes onto different weights than an uninterrupted run
        saver = next(c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint))
        if saver.saved_at != adapter.batches_done:
            saver.save(trainer, adapter)


class BatchClock(Callback):
    """Times the training batches after the first, checkpoints included: the steady training throughput.

    The first batch of a session pays one-off costs (oneDNN builds its kernels, ~0.1 s for DCGAN) and Lightning's
    setup comes before it (~1 s in a fresh process); over a 100-batch benchmark they would hide a quarter of the
    rate. ``genzoo.train`` reports the wall time of the whole session separately. Test evaluations
    (:class:`TestCurve`) are not training: their time is left out.
    """

    def __init__(self) -> None:
        self.started: float | None = None
        self.ended: float | None = None
        self.timed_batches = 0
        self.excluded = 0.0  # seconds inside the timed span that were not training

    def on_train_batch_end(self, *args: Any) -> None:
        now = time.perf_counter()
        if self.started is None:
            self.started = now
        else:
            self.ended, self.timed_batches = now, self.timed_batches + 1

    def seconds_per_batch(self) -> float | None:
        """Mean seconds per batch after the first; None when a session trained fewer than two batches."""
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started - self.excluded) / self.timed_batches


class TestCurve(Callback):
    """Every ``every`` batches, the model's own evaluation on the test split (what ``genzoo eval`` reports),
    logged as ``test_NAME`` beside the training losses: the held-out learning curve in ``curves.csv`` /
    ``curves.png``. Rank zero evaluates; the weights are untouched and each batch seeds its own random state, so
    a run trains the same batches with or without it."""

    def __init__(self, every: int, x: Tensor, labels: Tensor | None, levels: int, data: str) -> None:
        self.every, self.x, self.labels, self.levels, self.data = every, x, labels, levels, data

    def on_train_batch_end(self, trainer: L.Trainer, adapter: ModelAdapter, *args: Any) -> None:
        if adapter.batches_done % self.every or not trainer.is_global_zero:
            return
        model = adapter.model
        started = time.perf_counter()
        model.eval()
        try:
            with torch.no_grad():
                metrics = model.evaluate(self.x.to(adapter.device), self.labels, self.levels, data=self.data)
        finally:
            model.train()
        clock = next((c for c in trainer.callbacks if isinstance(c, BatchClock)), None)
        if clock is not None and clock.started is not None:  # make_trainer places the clock after this callback
            clock.excluded += time.perf_counter() - started
        values = {
            f"test_{name}": float(value)
            for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "test_images"
        }
        for logger in trainer.loggers:
            logger.log_metrics(values, step=adapter.batches_done - 1)


class StopAfterBatches(Callback):
    """``--max-steps`` counts batches (a GAN's two optimizer steps are one batch), unlike Lightning's own."""

    def __init__(self, max_batches: int) -> None:
        self.max_batches = max_batches

    def on_train_start(self, trainer: L.Trainer, adapter: ModelAdapter) -> None:
        self.on_train_batch_end(trainer, adapter)  # a run resumed at its budget trains no further batch

    def on_train_batch_end(self, trainer: L.Trainer, adapter: ModelAdapter, *args: Any) -> None:
        if adapter.batches_done >= self.max_batches:
            trainer.should_stop = True


def native_bf16() -> bool:
    """Whether the device training runs on computes bf16 natively (and so gains from bf16 autocast).

    CUDA: Ampere or newer. CPU: the avx512_bf16 or AMX instructions; without them oneDNN emulates bf16 through
    fp32 and autocast makes training slower, not faster (benchmarks/log/speed.md: DCGAN on an avx512 Xeon without
    avx512_bf16).
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu  # torch offers these CPU checks only as private functions: a missing one counts as "no"
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def default_precision(preferred: str) -> str:
    """A model's preferred Lightning precision where this machine runs it natively, else ``"32-true"``.

    Models that measured the same quality in bf16 autocast prefer ``"bf16-mixed"``; on hardware that only emulates
    bf16 that choice would cost speed and buy nothing, so training falls back to fp32 (an explicit ``--precision``
    is always obeyed).
    """
    if preferred.startswith("bf16") and not native_bf16():
        return "32-true"
    return preferred


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    Large CPU tensors are otherwise mmap'ed and unmapped on every allocation, and the page faults cost more than
    the arithmetic (benchmarks/log/likelihood.md, NADE's [B, D, H] activations). jemalloc/tcmalloc would do the same via
    LD_PRELOAD; this needs no extra install.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)


def quiet_lightning() -> None:
    """Keep the terminal for the progress bar and genzoo's own output (Lightning tips and deprecations are noise)."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


DDP_START_METHODS: dict[str, Any] = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


def check_devices(devices: int | str) -> int | str:
    """``devices`` as Lightning takes it: ``"auto"`` or a count no larger than what this machine has (GPUs, else
    CPU cores: Lightning would start any number of CPU processes, each with its own copy of the model)."""
    if devices == "auto":
        return devices
    try:
        count = int(devices)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or str(devices).strip() != str(count):
        raise GenzooError(f"--devices must be a positive whole number or auto, got {devices!r}")
    if torch.cuda.is_available():
        available, kind = torch.cuda.device_count(), "GPU"
    elif torch.backends.mps.is_available():
        available, kind = 1, "GPU"
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        kind = "CPU core"
    if count > available:
        raise GenzooError(f"--devices {count}: this machine has {available} {kind}{'s' * (available > 1)}")
    return count


def check_strategy(strategy: str) -> None:
    names = ["auto", *StrategyRegistry.available_strategies()]
    if strategy not in names:
        shown = [name for name in names if "find_unused" not in name]  # the variants of ddp* are implied
        raise GenzooError(f"unknown --strategy {strategy!r}; Lightning's are: {', '.join(shown)}")


def make_trainer(
    run_dir: Path,
    *,
    max_epochs: int | None,
    max_batches: int | None,
    checkpoint_every: int,
    devices: int | str,
    strategy: str | DDPStrategy,
    precision: str,
    progress: bool,
    trackers: tuple[str, ...] = (),
    test_curve: TestCurve | None = None,
) -> L.Trainer:
    """A Lightning trainer writing into ``run_dir``: checkpoints every ``checkpoint_every`` batches, the CSV log and
    the ``trackers`` asked for (``genzoo.trackers``), the curves refreshed at each checkpoint and the
    ``test_curve`` evaluations if given."""
    loggers = make_loggers(run_dir, trackers)
    callbacks: list[Callback] = [
        PeriodicCheckpoint(run_dir / "checkpoints" / "last.ckpt", checkpoint_every),
        CurveRefresh(run_dir, checkpoint_every),
        LogSettings(),
    ]
    if max_batches is not None:
        callbacks.append(StopAfterBatches(max_batches))
    if test_curve is not None:
        callbacks.append(test_curve)
    callbacks.append(GracefulStop())
    callbacks.append(BatchClock())  # last, so the batch it times includes the other callbacks' work
    devices = check_devices(devices)
    if isinstance(strategy, str):
        check_strategy(strategy)
    if strategy in DDP_START_METHODS:
        # GANs update the generator through a frozen discriminator (and the discriminator on detached samples),
        # so each backward leaves some parameters without gradients: DDP must look for them
        strategy = DDPStrategy(start_method=DDP_START_METHODS[strategy], find_unused_parameters=True)
    try:
        return L.Trainer(
            accelerator="auto",
            devices=devices,
            strategy=strategy,
            precision=precision,
            max_epochs=max_epochs or 1,
            logger=loggers,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            log_every_n_steps=10,
            plugins=[AtomicCheckpointIO()],
            default_root_dir=run_dir,
        )
    except (ValueError, TypeError, RuntimeError, ImportError, MisconfigurationException) as err:
        # Lightning checks precision names and the devices / strategy / precision combination here
        raise GenzooError(" ".join(str(err).split())) from None


def fit(
    model: GenerativeModel,
    stream: BatchStream,
    trainer: L.Trainer,
    max_batches: int | None,
    checkpoint: Path | None,
    seed: int = 0,
) -> ModelAdapter:
    """Run Lightning's fit; ``checkpoint`` resumes exactly (weights, optimizers, batch counter, data order)."""
    adapter = ModelAdapter(model, max_batches, seed)
    adapter.stream = stream
    stream.position = lambda: adapter.batches_done
    stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)  # make_trainer's trainers
    if stop is not None and trainer.num_devices * trainer.num_nodes == 1:
        stop.install()  # from Lightning's setup on; its end restores the handlers it found, so restore ours after
    try:
        trainer.fit(adapter, train_dataloaders=stream, ckpt_path=checkpoint)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        if checkpoint is None or adapter.training_started:
            raise
        # read_checkpoint checked what genzoo knows of a checkpoint; Lightning's own loop state broke its restore
        reason = " ".join(str(err).split())
        raise GenzooError(f"{checkpoint} cannot be restored: {type(err).__name__}: {reason}") from None
    finally:
        if stop is not None:
            stop.restore()
    return adapter
