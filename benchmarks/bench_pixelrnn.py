"""Row LSTM, Diagonal BiLSTM and PixelCNN on binarized MNIST: training img/s, sampling time (naive vs fast), peak
RSS and test NLL after the same wall-clock training budget.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_pixelrnn.py --quick 120   # 120 s of training each
    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_pixelrnn.py              # full: 1800 s each, paper size

Each architecture runs in its own process (so peak RSS is its own) and trains with Adam at batch 32 on dynamically
shuffled binarized MNIST for the budget, then is scored on the standard test split (all 10,000 images in the full
mode, the first 1,000 with --quick). Sampling times are for 16 images of 28x28. The fast sampler is timed whole;
the naive sampler re-runs the network once per pixel, so with --quick it is timed on the first 2 rows (56 pixels,
the rest given through ``conditioned_on``) and scaled to 784 pixels; the full mode times all 784.
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

ARCHITECTURES = ("row_lstm", "diagonal_bilstm", "pixelcnn")
PAPER_MNIST = {"layers": 7, "hidden": 16, "head": 32}
QUICK = {"layers": 4, "hidden": 16, "head": 64}  # the registered default
PAPER_NLL = {"diagonal_bilstm": "79.20", "row_lstm": "-", "pixelcnn": "81.30"}  # table 4 (binarized MNIST)


def measure(name: str, seconds: float, quick: bool, threads: int) -> dict:
    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.transforms import prepare_test
    from genzoo.engine import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dataset = load_dataset("binarized-mnist")
    model = genzoo.create(name, dataset.image_shape, **(QUICK if quick else PAPER_MNIST))
    optimizer = model.configure_optimizers()["model"]
    train = dataset.train.float()
    generator = torch.Generator().manual_seed(0)
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        x = train[torch.randint(len(train), (32,), generator=generator)]
        loss = -model.log_prob(x).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        images += len(x)
    train_seconds = time.perf_counter() - started
    model.eval()
    test = prepare_test(dataset.test[: 1000 if quick else None], model.input_kind, dataset.levels)
    metrics = model.evaluate(test, None, dataset.levels, batch_size=250)

    torch.manual_seed(1)
    started = time.perf_counter()
    model.sample(16, method="fast")
    fast_seconds = time.perf_counter() - started
    pixels = 56 if quick else 784
    partial = torch.zeros(16, *dataset.image_shape)
    partial.view(16, -1)[:, :pixels] = -1  # only these pixels are sampled; each costs one full forward pass
    started = time.perf_counter()
    model.sample(16, conditioned_on=partial, method="naive")
    naive_seconds = (time.perf_counter() - started) * 784 / pixels
    return {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_images": images,
        "train_images_per_second": images / train_seconds,
        "test_nll_nats": metrics["nll_nats"],
        "test_images": metrics["test_images"],
        "sample_fast_seconds": fast_seconds,
        "sample_naive_seconds": naive_seconds,
        "naive_extrapolated": pixels < 784,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", type=float, default=None, help="training seconds per model (smaller run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick is not None
    seconds = args.quick if quick else 1800.0
    if args.one:
        print(json.dumps(measure(args.one, seconds, quick, args.threads)))
        return
    rows = []
    for name in ARCHITECTURES:
        command = [sys.executable, __file__, "--one", name, "--threads", str(args.threads)]
        command += ["--quick", str(args.quick)] if quick else []
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    settings = QUICK if quick else PAPER_MNIST
    print(f"{date.today()} {platform.machine()}, torch {torch.__version__}, {args.threads} threads")
    print(f"settings {settings}, batch 32, Adam 1e-3, {seconds:.0f} s of training each")
    print(
        "| model | params | img/s train | images seen | test NLL (nats) | paper NLL | sample 16 fast (s) "
        "| sample 16 naive (s) | naive/fast | peak RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        naive = f"{row['sample_naive_seconds']:.0f}" + (" (extrap.)" if row["naive_extrapolated"] else "")
        print(
            f"| {row['model']} | {row['parameters']:,} | {row['train_images_per_second']:.0f} "
            f"| {row['train_images']:,} "
            f"| {row['test_nll_nats']:.2f} ({row['test_images']} imgs) | {PAPER_NLL[row['model']]} "
            f"| {row['sample_fast_seconds']:.1f} | {naive} "
            f"| {row['sample_naive_seconds'] / row['sample_fast_seconds']:.0f}x | {row['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
