"""Adam's fused kernel against its for-loop form: training img/s of each model, interleaved in one process.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_optimizer.py [--models infogan gan ...] [--rounds 5]

Every model is built twice from the same seed, one copy with the optimizers ``genzoo.models.base.adam`` makes
(fused where the device has the kernel), one with the same optimizers in torch's for-loop form. The two copies
train on the same pre-built batches in alternating rounds (``--batches`` each, after two untimed batches), so
the speed drift of a shared or throttled machine hits both alike; the table gives the median img/s of each and
their ratio. Both run the same update rule (Adam), so the ratio is the cost of the optimizer's implementation.
"""

import argparse
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

import genzoo
from genzoo.data import load_dataset
from genzoo.data.stream import BatchStream
from genzoo.engine import keep_freed_memory
from genzoo.models.base import DirectStep

DEFAULT = ["gan", "dcgan", "infogan", "text2image", "aae", "vae", "nade", "pixelcnn", "cyclegan", "stargan"]


def for_loop(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.optim.Optimizer]:
    """The same Adam optimizers (groups, rates, betas) in torch's for-loop implementation."""
    return {
        name: torch.optim.Adam([{k: v for k, v in g.items() if k != "fused"} for g in opt.param_groups], fused=False)
        for name, opt in optimizers.items()
    }


def compare(name: str, rounds: int, batches: int) -> dict:
    cls = genzoo.registry.models.get(name)
    dataset = load_dataset(cls.default_data)
    copies = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = genzoo.create(name, dataset.image_shape).train()
        step = DirectStep(model)
        if not fused:
            step.optimizers = for_loop(step.optimizers)
        copies[fused] = (model, step)
    stream = BatchStream(dataset.train, dataset.train_labels, 64, copies[True][0].input_kind, dataset.levels, 0)
    data = [stream.batch(i) for i in range(batches + 2)]
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for fused, (model, step) in copies.items():
            for batch in data[:2]:
                model.training_step(batch, step)
            start = time.perf_counter()
            for batch in data[2:]:
                model.training_step(batch, step)
            rates[fused].append(batches * 64 / (time.perf_counter() - start))
    fused, loop = statistics.median(rates[True]), statistics.median(rates[False])
    return {"model": name, "fused": fused, "for_loop": loop, "ratio": fused / loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="*", default=DEFAULT)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=10, help="timed batches of 64 per round and variant")
    args = parser.parse_args()
    keep_freed_memory()
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    print(f"# bench_optimizer {when}, {platform.machine()}, torch {torch.__version__}")
    print(f"# {torch.get_num_threads()} threads, {args.rounds} rounds of {args.batches} batches per variant")
    print("| model | img/s fused Adam | img/s for-loop Adam | ratio |\n|---|---|---|---|")
    for name in args.models:
        row = compare(name, args.rounds, args.batches)
        print(f"| {name} | {row['fused']:,.0f} | {row['for_loop']:,.0f} | {row['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
