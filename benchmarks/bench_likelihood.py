"""Structure baselines and NADE on binarized MNIST: training speed, sampling time, peak memory, test NLL.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_likelihood.py            # full budget
    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_likelihood.py --quick    # a smoke run

Each model runs in its own process (so peak RSS is its own): a timed loop of training steps at batch 64 gives
img/s through the model's training hook alone, then ``genzoo.train`` trains it for the same number of epochs as
every other model through the real engine and reports the test NLL on the standard test split.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date

import torch

MODELS = {"independent": {}, "markov": {"order": 2}, "fvsbn": {}, "nade": {"hidden": 500}}
PAPER = {"independent": "-", "markov": "-", "fvsbn": "97.45", "nade": "88.33-88.86"}


def measure(name: str, settings: dict, data: str, epochs: int, steps: int, out: str) -> dict:
    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.stream import BatchStream
    from genzoo.engine import keep_freed_memory
    from timing import hook_images_per_second

    keep_freed_memory()
    dataset = load_dataset(data)
    model = genzoo.create(name, dataset.image_shape, **settings)
    stream = BatchStream(dataset.train, None, 64, model.input_kind, dataset.levels, seed=0)
    images_per_second = hook_images_per_second(model, stream, steps)

    run = genzoo.train(name, data, max_epochs=epochs, out=out, settings=settings, progress=False, samples=64)
    start = time.perf_counter()
    with torch.no_grad():
        run.model.sample(64)
    sample_seconds = time.perf_counter() - start
    return {
        "model": name,
        "train_img_per_s": images_per_second,
        "sample_64_s": sample_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test_nll_nats": run.metrics["nll_nats"],
        "bits_per_dim": run.metrics["bits_per_dim"],
        "epochs": epochs,
        "data_source": run.metrics["data_source"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 epoch and a short speed loop")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default="binarized-mnist")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    epochs, steps = (1, 20) if args.quick else (args.epochs, 100)
    if args.one:
        print(json.dumps(measure(args.one, MODELS[args.one], args.data, epochs, steps, f"{args.out}/{args.one}")))
        return
    rows = []
    for name in args.models:
        command = [sys.executable, __file__, "--one", name, "--data", args.data, "--out", args.out]
        command += ["--quick"] if args.quick else ["--epochs", str(args.epochs)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"{date.today()} | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
        f"threads {torch.get_num_threads()} | {rows[0]['data_source']} | {rows[0]['epochs']} epochs, batch 64"
    )
    print("| model | train img/s | 64 samples (s) | peak RSS (MB) | test NLL (nats) | bits/dim | paper NLL |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['train_img_per_s']:,.0f} | {r['sample_64_s']:.3f} | {r['peak_rss_mb']:,.0f} | "
            f"{r['test_nll_nats']:.2f} | {r['bits_per_dim']:.4f} | {PAPER[r['model']]} |"
        )


if __name__ == "__main__":
    main()
