"""Row LSTM and Diagonal BiLSTM training speed: the current scans against an earlier implementation of the layers,
interleaved in one process.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_pixelrnn_speed.py [--reference-commit 08f3a7a]
        [--reference-file OLD_PIXELRNN_PY] [--models row_lstm diagonal_bilstm] [--rounds 5] [--batches 5]

The reference is ``src/genzoo/nn/pixelrnn.py`` as of ``--reference-commit`` (read with ``git show``; by default
the commit before the scans became autograd Functions) or any copy of that file given with ``--reference-file``;
its layers are loaded as a separate module and take the same parameters (same names and shapes). Each model is
built at its default configuration, and a second copy gets the reference layers with the same weights; both train
with their own Adam on the same pre-built batches of 64 binarized-MNIST images, in alternating rounds (``--batches``
timed batches each after one untimed one), so that the drift of a shared machine hits both alike. The table gives
the median img/s of each and their ratio, beside the load average and the fp32 / bf16 matrix-multiply peak
measured before and after the model's rounds: ratios, not absolute rates, are the result.
"""

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import genzoo
from genzoo.data import load_dataset
from genzoo.data.stream import BatchStream
from genzoo.engine import keep_freed_memory
from genzoo.models.base import DirectStep
from timing import as_trained, matmul_peak

ROOT = Path(__file__).resolve().parents[1]
LAYER_CLASSES = {"row_lstm": "RowLSTMLayer", "diagonal_bilstm": "DiagonalBiLSTMLayer"}


def load_reference(path: Path):
    """The module at ``path`` (an earlier genzoo/nn/pixelrnn.py), imported under a name of its own."""
    spec = importlib.util.spec_from_file_location("reference_pixelrnn", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def reference_file(commit: str) -> Path:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:src/genzoo/nn/pixelrnn.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "pixelrnn.py"
    path.write_text(source)
    return path


def with_reference_layers(model: torch.nn.Module, name: str, reference) -> torch.nn.Module:
    """``model`` with every layer replaced by the reference class's, holding the same weights."""
    layer_class = getattr(reference, LAYER_CLASSES[name])
    for index, layer in enumerate(model.layers):
        replacement = layer_class(model.config.hidden, model.image_shape[0])
        replacement.load_state_dict(layer.state_dict())
        model.layers[index] = replacement
    return model


def peaks() -> tuple[float, float]:
    return matmul_peak(torch.float32), matmul_peak(torch.bfloat16)


def compare(name: str, reference, rounds: int, batches: int) -> dict:
    dataset = load_dataset("binarized-mnist")
    copies = {}
    for label in ("reference", "current"):
        torch.manual_seed(0)
        model = genzoo.create(name, dataset.image_shape).train()
        if label == "reference":
            with_reference_layers(model, name, reference)
        copies[label] = (model, DirectStep(model))
    stream = BatchStream(dataset.train, None, 64, copies["current"][0].input_kind, dataset.levels, 0)
    data = [stream.batch(i) for i in range(batches + 1)]
    load_before, peaks_before = os.getloadavg()[0], peaks()
    rates: dict[str, list[float]] = {label: [] for label in copies}
    for _ in range(rounds):
        for label, (model, step) in copies.items():
            with as_trained(model):
                model.training_step(data[0], step)
                start = time.perf_counter()
                for batch in data[1:]:
                    model.training_step(batch, step)
            rates[label].append(batches * 64 / (time.perf_counter() - start))
    peaks_after = peaks()
    reference_rate, current_rate = (statistics.median(rates[label]) for label in ("reference", "current"))
    return {
        "model": name,
        "reference": reference_rate,
        "current": current_rate,
        "ratio": current_rate / reference_rate,
        "load": (load_before, os.getloadavg()[0]),
        "fp32_peak": (peaks_before[0] + peaks_after[0]) / 2,
        "bf16_peak": (peaks_before[1] + peaks_after[1]) / 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-commit", default="08f3a7a", help="commit whose nn/pixelrnn.py is the reference")
    parser.add_argument("--reference-file", type=Path, default=None, help="an earlier nn/pixelrnn.py instead")
    parser.add_argument("--models", nargs="*", default=list(LAYER_CLASSES), choices=list(LAYER_CLASSES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5, help="timed batches of 64 per round and implementation")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    path = args.reference_file or reference_file(args.reference_commit)
    reference = load_reference(path)
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    print(f"# bench_pixelrnn_speed {when}, {platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    source = args.reference_file or f"commit {args.reference_commit}"
    print(f"# reference: nn/pixelrnn.py of {source}; {args.rounds} rounds of {args.batches} batches of 64 each")
    print("| model | img/s reference | img/s current | ratio | load avg before / after | fp32 / bf16 peak GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        row = compare(name, reference, args.rounds, args.batches)
        print(
            f"| {name} | {row['reference']:,.0f} | {row['current']:,.0f} | {row['ratio']:.2f} "
            f"| {row['load'][0]:.2f} / {row['load'][1]:.2f} | {row['fp32_peak']:.0f} / {row['bf16_peak']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
