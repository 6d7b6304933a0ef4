"""A run's training curves: every value its loggers wrote, against batches, as ``curves.csv`` and ``curves.png``.

Lightning's CSVLogger writes one ``logs/csv/version_N/metrics.csv`` per training session (its ``step`` column is
the batch index, from 0). A resumed run has several, and a session resumed from a checkpoint replays the batches
its predecessor had logged after that checkpoint: the curves join the sessions by batch, a later session's row
replacing an earlier one at the same batch.

The figure is drawn with matplotlib's object-oriented API on an Agg canvas, never through ``pyplot``: that would
change the process-wide backend of a user who imported genzoo into a notebook or a GUI program.
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from genzoo.runs import atomic_write_bytes

CSV = "curves.csv"
FIGURE = "curves.png"
# Lightning's bookkeeping columns, not values a model logged
BOOKKEEPING = ("step", "epoch")
# how many times its own duration a refresh waits before the next one: at most ~5% of training's wall time
REFRESH_INTERVAL_FACTOR = 20


def session_logs(run_dir: Path) -> list[Path]:
    """The CSV logs of a run's training sessions, in the order they ran (version_2 before version_10)."""
    folders = [p for p in (run_dir / "logs" / "csv").glob("version_*") if p.name.removeprefix("version_").isdigit()]
    folders.sort(key=lambda p: int(p.name.removeprefix("version_")))
    return [p / "metrics.csv" for p in folders if (p / "metrics.csv").is_file()]


def read_curves(run_dir: Path) -> tuple[list[str], dict[int, dict[str, float]]]:
    """The logged value names (in the order they first appear) and, by batch (counted from 1), the values logged
    after that batch."""
    names: list[str] = []
    rows: dict[int, dict[str, float]] = {}
    for path in session_logs(run_dir):
        session: dict[int, dict[str, float]] = {}
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if not (row.get("step") or "").isdigit():
                    continue
                values = {key: float(value) for key, value in row.items() if key not in BOOKKEEPING and value}
                session.setdefault(int(row["step"]) + 1, {}).update(values)
                names += [key for key in values if key not in names]
        rows.update(session)
    return names, dict(sorted(rows.items()))


def curves_csv(names: list[str], rows: dict[int, dict[str, float]]) -> bytes:
    """One row per logged batch: ``batch`` and every value name (empty where that batch did not log it)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["batch", *names])
    for batch, values in rows.items():
        writer.writerow([batch, *(repr(values[name]) if name in values else "" for name in names)])
    return text.getvalue().encode()


def curves_png(names: list[str], rows: dict[int, dict[str, float]], title: str) -> bytes:
    """One panel per logged value against batches (their scales differ too much to share an axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(3, max(1, len(names)))
    panel_rows = max(1, math.ceil(len(names) / columns))
    figure = Figure(figsize=(4 * columns, 2.8 * panel_rows + 0.4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    axes = figure.subplots(panel_rows, columns, squeeze=False).flatten()
    for axis, name in zip(axes, names):
        points = [(batch, values[name]) for batch, values in rows.items() if name in values]
        batches, values = zip(*points)
        axis.plot(batches, values, marker="." if len(points) < 30 else None, linewidth=1)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("batches")
        axis.grid(alpha=0.3)
    for axis in axes[len(names) :]:
        axis.set_axis_off()
    if not names:
        axes[0].text(0.5, 0.5, "nothing logged yet (values are logged every 10 batches)", ha="center", va="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_curves(run_dir: Path) -> None:
    """Write ``curves.csv`` and ``curves.png`` of the run from its session logs."""
    names, rows = read_curves(run_dir)
    atomic_write_bytes(run_dir / CSV, curves_csv(names, rows))
    last = f", {max(rows):,} batches" if rows else ""
    atomic_write_bytes(run_dir / FIGURE, curves_png(names, rows, f"{run_dir.name}{last}"))


def refresh(run_dir: Path) -> bool:
    """:func:`write_curves` that never fails a run: any error is one ``warning:`` line on stderr (False)."""
    try:
        write_curves(run_dir)
    except Exception as err:  # noqa: BLE001  (a figure is never worth a training run)
        detail = " ".join(str(err).split()) or type(err).__name__
        print(f"warning: the curves of {run_dir} were not refreshed: {detail}", file=sys.stderr, flush=True)
        return False
    return True


class CurveRefresh(Callback):
    """Refreshes the curves after every checkpoint's batch is logged, at the end of training and when training
    fails (the curves of a diverged run show how it got there).

    Lightning writes a batch's values after the callbacks' ``on_train_batch_end``, so the refresh for checkpoint
    batch t happens as batch t + 1 starts. A refresh (~0.2 s for one panel, ~0.8 s for six) is skipped until
    :data:`REFRESH_INTERVAL_FACTOR` times the last one's duration has passed since it, so the curves never cost a
    fast model more than a few percent of its training time; after a failed refresh only the end tries again.
    """

    def __init__(self, run_dir: Path, every: int) -> None:
        self.run_dir, self.every = run_dir, every
        self.session_start: int | None = None
        self.refreshed_at: float | None = None  # perf_counter when the last refresh ended
        self.seconds = 0.0  # what it took
        self.failed = False

    def on_train_start(self, trainer: L.Trainer, adapter: Any) -> None:
        self.session_start = adapter.batches_done

    def on_train_batch_start(self, trainer: L.Trainer, adapter: Any, *args: Any) -> None:
        done = adapter.batches_done
        if done % self.every == 0 and done != self.session_start:
            self.update(trainer, final=False)

    def on_train_end(self, trainer: L.Trainer, adapter: Any) -> None:
        self.update(trainer, final=True)

    def on_exception(self, trainer: L.Trainer, adapter: Any, exception: BaseException) -> None:
        if self.session_start is not None:  # not a start refused before training (a damaged checkpoint)
            self.update(trainer, final=True)

    def update(self, trainer: L.Trainer, final: bool) -> None:
        if not trainer.is_global_zero:
            return
        started = time.perf_counter()
        recent = self.refreshed_at is not None and started - self.refreshed_at < REFRESH_INTERVAL_FACTOR * self.seconds
        if not final and (recent or self.failed):
            return
        self.failed = not refresh(self.run_dir)
        self.refreshed_at = time.perf_counter()
        self.seconds = self.refreshed_at - started
