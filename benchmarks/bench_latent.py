"""VAE and AAE on binarized MNIST and (dynamically binarized) Fashion-MNIST: speed, memory, test ELBO / IWAE NLL.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_latent.py            # full budget
    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_latent.py --quick    # a smoke run

Each (model, data) pair runs in its own process (so peak RSS is its own): a timed loop of training steps at batch
64 gives img/s through the model's training hook alone, then ``genzoo.train`` trains it for a fixed budget through
the real engine (whose img/s over the whole run is reported too: less sensitive to other load on the machine), at
batch 64 like the likelihood benchmark, and evaluates on the standard test split with the same static
binarization, so the VAE's numbers sit beside NADE's and FVSBN's. The VAE's test NLL is the IWAE estimate L_k (an
upper bound on the true NLL in expectation); the AAE has no likelihood and reports its reconstruction NLL and the
Parzen-window log-likelihood of 10,000 samples.
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

MODELS = {
    "vae": {"latent": 50, "hidden": 200, "layers": 2},  # Burda et al.'s one-stochastic-layer MNIST architecture
    "vae-iwae": {"latent": 50, "hidden": 200, "layers": 2, "objective": "iwae", "k": 5},
    "aae": {"latent": 8, "hidden": 256, "layers": 2, "discriminator_hidden": 256},  # narrower than default: CPU time
}


def measure(key: str, data: str, budget: dict, steps: int, eval_k: int, out: str) -> dict:
    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.stream import BatchStream
    from genzoo.engine import keep_freed_memory
    from timing import hook_images_per_second

    keep_freed_memory()
    name = key.split("-")[0]
    settings = dict(MODELS[key], **({"eval_k": eval_k} if name == "vae" else {}))
    dataset = load_dataset(data)
    model = genzoo.create(name, dataset.image_shape, **settings)
    stream = BatchStream(dataset.train, dataset.train_labels, 64, model.input_kind, dataset.levels, seed=0)
    images_per_second = hook_images_per_second(model, stream, steps)

    start = time.perf_counter()
    run = genzoo.train(name, data, out=out, settings=settings, progress=False, samples=64, **budget)
    train_and_eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        run.model.sample(64)
    sample_seconds = time.perf_counter() - start
    metrics = run.metrics
    return {
        "model": key,
        "data": data,
        "train_img_per_s": images_per_second,
        "engine_img_per_s": run.metrics["train_images_per_second"],
        "sample_64_s": sample_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "budget": ", ".join(f"{v} {k.removeprefix('max_')}" for k, v in budget.items()),
        "minutes": train_and_eval_seconds / 60,
        "data_source": metrics["data_source"],
        **{k: metrics.get(k) for k in ("nll_nats", "elbo_nll_nats", "kl_nats", "bits_per_dim", "iwae_k")},
        **{k: metrics.get(k) for k in ("reconstruction_nats", "parzen_log_likelihood_nats", "parzen_standard_error")},
    }


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 batches, IWAE k = 10 and a short speed loop")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batches", type=int, help="train this many batches instead of --epochs")
    parser.add_argument("--eval-k", type=int, default=200, help="importance samples of the VAE's test IWAE NLL")
    parser.add_argument("--data", nargs="*", default=["binarized-mnist", "fashion-mnist"])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench-latent")
    args = parser.parse_args()
    if args.quick:
        budget, steps, eval_k = {"max_steps": 100}, 20, 10
    else:
        budget = {"max_steps": args.batches} if args.batches else {"max_epochs": args.epochs}
        steps, eval_k = 50, args.eval_k
    if args.one:
        (data,) = args.data
        row = measure(args.one, data, budget, steps, eval_k, f"{args.out}/{data}/{args.one}")
        print(json.dumps(row))
        return
    rows = []
    for data in args.data:
        for key in args.models:
            command = [sys.executable, __file__, "--one", key, "--data", data, "--out", args.out]
            if args.quick:
                command += ["--quick"]
            else:
                command += ["--epochs", str(args.epochs), "--eval-k", str(args.eval_k)]
                command += ["--batches", str(args.batches)] if args.batches else []
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(
        f"{date.today()} | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
        f"threads {torch.get_num_threads()} | {rows[0]['budget']}, batch 64 | VAE IWAE k = {eval_k}"
    )
    print(
        "| data | model | train img/s (hook / engine) | 64 samples (s) | peak RSS (MB) | minutes | "
        "test IWAE NLL (nats) | test -ELBO (nats) | KL (nats) | bits/dim | AAE recon. NLL | AAE Parzen LL (nats) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        parzen = r["parzen_log_likelihood_nats"]
        parzen_text = "-" if parzen is None else f"{parzen:.1f} ± {r['parzen_standard_error']:.1f}"
        print(
            f"| {r['data']} | {r['model']} | {r['train_img_per_s']:,.0f} / {r['engine_img_per_s']:,.0f} | "
            f"{r['sample_64_s']:.3f} | "
            f"{r['peak_rss_mb']:,.0f} | {r['minutes']:.1f} | {number(r['nll_nats'])} | {number(r['elbo_nll_nats'])} | "
            f"{number(r['kl_nats'])} | {number(r['bits_per_dim'], 4)} | {number(r['reconstruction_nats'])} | "
            f"{parzen_text} |"
        )


if __name__ == "__main__":
    main()
