"""Training images per second of every model on whatever device this machine has (CUDA, else Apple MPS, else CPU).

    python benchmarks/throughput.py [--models dcgan,vae] [--data cifar10] [--batch-size 64] [--batches 50]

Each model trains ``--batches`` timed batches (after ``--warmup`` untimed ones) through its own training hook, on
batches built on the device from the in-memory dataset (as ``genzoo train`` builds them), in the precision
``genzoo train`` would pick there (bf16 autocast for the models that prefer it, where the device computes bf16
natively). Without ``--data`` each model trains on its default data (``genzoo list``). Prints one row per model;
a model that cannot take the data prints its one-line error instead. Paste the table into benchmarks/README.md
with the device's name to add a GPU table.
"""

import argparse
import time

import torch

import genzoo
from genzoo.data import load_dataset
from genzoo.data.stream import BatchStream
from genzoo.engine import default_precision
from genzoo.errors import GenzooError
from genzoo.models.base import DirectStep
from genzoo.registry import models


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def images_per_second(name: str, data: str, batch_size: int, batches: int, warmup: int, device: torch.device):
    """(precision, img/s) of ``name`` training on ``data``."""
    dataset = load_dataset(data)
    model = genzoo.create(name, dataset.image_shape).to(device)
    precision = default_precision(model.precision)
    stream = BatchStream(dataset.train, dataset.train_labels, batch_size, model.input_kind, dataset.levels, 0)
    stream.to(device)
    step = DirectStep(model, max_batches=warmup + batches)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    with autocast:
        for index in range(warmup + batches):
            if index == warmup:
                synchronize(device)
                started = time.perf_counter()
            step.batch_index = index
            model.training_step(stream.batch(index), step)
    synchronize(device)
    return precision, batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(genzoo.list_models()), help="comma-separated (default: all)")
    parser.add_argument("--data", default=None, help="dataset for every model (default: each model's own)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=50, help="timed batches per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first (kernel selection, caches)")
    args = parser.parse_args()
    device = pick_device()
    described = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device: {device.type} ({described}; torch {torch.__version__})")
    print(f"{'model':<16} {'data':<20} {'batch':>5} {'precision':<11} {'img/s':>10}")
    for name in args.models.split(","):
        data = args.data or models.get(name).default_data
        try:
            precision, rate = images_per_second(name, data, args.batch_size, args.batches, args.warmup, device)
        except GenzooError as err:
            print(f"{name:<16} {data:<20} error: {err}")
            continue
        print(f"{name:<16} {data:<20} {args.batch_size:>5} {precision:<11} {rate:>10.1f}")


if __name__ == "__main__":
    main()
