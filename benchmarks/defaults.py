"""Every model's plain `genzoo train MODEL` (no flags), one after the other, against the number its table gives.

    GENZOO_DATA_DIR=../shared/data python benchmarks/defaults.py [--models nade dcgan ...] [--out DIR]

Prints, per model, the budget it ran, the training time, the headline metric of its zoo recipe and the zoo card's
number beside it (the table the README shows), and writes the table to benchmarks/defaults.md. Where a zoo entry was
trained with a longer budget than the default (the likelihood models on binarized MNIST), the two numbers differ by
design; the row says so. Not part of CI: it takes one to two hours on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from genzoo import zoo
from genzoo.registry import models
from zoo import RECIPES, machine

OUTPUT = Path(__file__).with_name("defaults.md")


def run(model: str, out: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    command = [sys.executable, "-m", "genzoo", "train", model, "--out", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - started


def row(model: str, metrics: dict, seconds: float) -> str:
    """The default run beside the zoo card: the same number when the card trained the same budget on the same data,
    else the card's budget and data are named."""
    recipe = RECIPES.get(model)
    metric = recipe.metric if recipe else "nll_nats"
    card = zoo.card(model) if zoo.has(model) else None
    if card is None:
        table = "-"
    else:
        table = f"{card['headline']['value']:.4g}"
        if (card["training"]["batches"], card["config"]["data"]) != (metrics.get("train_batches"), metrics["data"]):
            table += f" ({card['training']['batches']:,} batches of {card['config']['data']})"
    value = metrics.get(metric)
    shown = "-" if value is None else f"{value:.4g}"
    budget = f"{metrics['data']}, {metrics.get('train_batches', 0):,} batches"
    return f"| {model} | {budget} | {seconds / 60:.1f} | {metric} | {shown} | {table} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=models.names())
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    info = machine()
    lines = [
        f"`python benchmarks/defaults.py` on {datetime.now(timezone.utc):%Y-%m-%d}, {info['cpu']}, "
        f"{info['threads']} threads, torch {info['torch']}, native bf16: {info['native_bf16']}.",
        "",
        "| model | budget (the default) | minutes (wall) | metric | genzoo train MODEL | zoo card |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        for model in args.models:
            print("$", shlex.join(["genzoo", "train", model]), flush=True)
            metrics, seconds = run(model, root / model)
            lines.append(row(model, metrics, seconds))
            print(lines[-1], flush=True)
    OUTPUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
