"""GAN, DCGAN, InfoGAN: training img/s (fp32 vs bf16 autocast, NCHW vs channels_last) and sample quality.

    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_gan.py            # full budget
    GENZOO_DATA_DIR=../shared/data python benchmarks/bench_gan.py --quick    # a smoke run

Part 1 (speed): a timed loop of ``training_step`` at batch 64 (one D step + one G step per batch) through the
model's hook alone, for each precision / memory layout. Part 2 (quality): ``genzoo.train`` trains each model for a
fixed number of batches through the real engine (Lightning, the model's default precision unless the row says
otherwise) on ``mnist`` and ``fashion-mnist``; the run's metrics.json gives the metric suite (feature-net Fréchet
distance, KID, precision/recall, IS-analogue; InfoGAN's code accuracy). Each measurement runs in its own process,
so peak RSS is its own. Load average is printed: the 2-core machine may be shared.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch

SPEED = [  # model, precision, channels_last
    ("gan", "32-true", False),
    ("gan", "bf16-mixed", False),
    ("dcgan", "32-true", False),
    ("dcgan", "32-true", True),
    ("dcgan", "bf16-mixed", False),
    ("dcgan", "bf16-mixed", True),
    ("infogan", "32-true", False),
    ("infogan", "32-true", True),
    ("infogan", "bf16-mixed", True),
]


def speed(name: str, precision: str, channels_last: bool, steps: int) -> dict:
    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.stream import BatchStream
    from genzoo.engine import keep_freed_memory
    from genzoo.models.base import DirectStep

    keep_freed_memory()
    dataset = load_dataset("mnist")
    settings = {"channels_last": channels_last} if name != "gan" else {}
    model = genzoo.create(name, dataset.image_shape, **settings).train()
    stream = BatchStream(dataset.train, dataset.train_labels, 64, model.input_kind, dataset.levels, seed=0)
    batches = [stream.batch(i % len(stream)) for i in range(steps + 3)]

    step = DirectStep(model)
    bf16 = precision == "bf16-mixed"
    for batch in batches[:3]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.training_step(batch, step)
    start = time.perf_counter()
    for batch in batches[3:]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.training_step(batch, step)
    images_per_second = steps * 64 / (time.perf_counter() - start)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        model.sample(2000)
    return {
        "model": name,
        "precision": precision,
        "channels_last": channels_last,
        "train_img_per_s": images_per_second,
        "sample_2000_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg": os.getloadavg()[0],
    }


def parzen_of(model, data: str, samples: int = 10_000, validation: int = 1000, test: int = 2000) -> dict:
    """The 2014 paper's Parzen-window log-likelihood on [0, 1] pixels: sigma fitted on the last ``validation``
    training images (the embedded mnist has no validation split), scored on the first ``test`` test images."""
    from genzoo.data import load_dataset
    from genzoo.metrics.parzen import parzen_metrics

    dataset = load_dataset(data)
    torch.manual_seed(0)
    with torch.no_grad():
        generated = torch.cat([(model.sample(1000) + 1) / 2 for _ in range(samples // 1000)])
    scale = dataset.levels - 1
    report = parzen_metrics(generated, dataset.train[-validation:].float() / scale, dataset.test[:test].float() / scale)
    return {"parzen_nats": report["parzen_log_likelihood_nats"], "parzen_se": report["parzen_standard_error"]}


def quality(name: str, data: str, steps: int, precision: str | None, out: str) -> dict:
    import genzoo

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    run = genzoo.train(name, data, max_steps=steps, out=out, precision=precision, progress=False)
    wall = time.perf_counter() - start
    m = run.metrics
    start = time.perf_counter()
    genzoo.evaluate(run.model, data)
    eval_seconds = time.perf_counter() - start
    parzen = parzen_of(run.model, data)
    return {
        "model": name,
        "data": data,
        "lightning_precision": m["train_precision"],  # what the run used (a bf16 preference is native-only)
        "batches": steps,
        "train_wall_s": wall,
        "eval_s": eval_seconds,
        "train_img_per_s": m["train_images_per_second"],
        **{k: m.get(k) for k in SUITE},
        **parzen,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg": os.getloadavg()[0],
    }


SUITE = [
    "frechet_distance",
    "kid",
    "precision",
    "recall",
    "inception_score_analogue",
    "real_inception_score_analogue",
    "code_accuracy",
    "generated_code_accuracy",
    "real_samples",
    "generated_samples",
    "feature_net",
]


def run_one(spec: dict) -> dict:
    command = [sys.executable, __file__, "--one", json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short speed loops and 50-batch trainings")
    parser.add_argument("--steps", type=int, default=1500, help="training batches per quality run")
    parser.add_argument("--infogan-steps", type=int, default=5500, help="InfoGAN batches on mnist (its 90%% run)")
    parser.add_argument("--speed-steps", type=int, default=40, help="timed training batches per speed row")
    parser.add_argument("--part", choices=["speed", "quality", "all"], default="all")
    parser.add_argument("--models", nargs="*", default=["gan", "dcgan", "infogan"])
    parser.add_argument("--datasets", nargs="*", default=["mnist", "fashion-mnist"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per measurement (0: torch's default)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench-gan")
    args = parser.parse_args()
    if args.one:
        spec = json.loads(args.one)
        kind, threads = spec.pop("kind"), spec.pop("threads")
        if threads:
            torch.set_num_threads(threads)
        print(json.dumps(speed(**spec) if kind == "speed" else quality(**spec)))
        return

    speed_steps = 5 if args.quick else args.speed_steps
    steps, infogan_steps = (50, 50) if args.quick else (args.steps, args.infogan_steps)
    threads = args.threads or torch.get_num_threads()
    print(f"# bench_gan {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}")
    print(f"# {os.cpu_count()} CPUs, torch {torch.__version__}, {threads} threads, args {vars(args)}")
    if args.part in ("speed", "all"):
        rows = []
        for name, precision, channels_last in SPEED:
            if name not in args.models:
                continue
            spec = {"kind": "speed", "name": name, "precision": precision, "channels_last": channels_last}
            rows.append(run_one({**spec, "steps": speed_steps, "threads": args.threads}))
            print(table(rows[-1:], list(rows[-1])), file=sys.stderr)
        print("\n## Training speed, batch 64 (model hook only), sampling 2,000 images\n")
        print(table(rows, list(rows[0])))
    if args.part in ("quality", "all"):
        plan = [
            ("gan", "mnist", steps, None),
            ("dcgan", "mnist", steps, "32-true"),
            ("dcgan", "mnist", steps, "bf16-mixed"),
            ("infogan", "mnist", infogan_steps, None),
            ("gan", "fashion-mnist", steps, None),
            ("dcgan", "fashion-mnist", steps, None),
            ("infogan", "fashion-mnist", steps, None),
        ]
        rows = []
        for name, data, budget, precision in plan:
            if name not in args.models or data not in args.datasets:
                continue
            out = f"{args.out}/{name}-{data}-{precision or 'default'}-{budget}"
            spec = {"kind": "quality", "name": name, "data": data, "steps": budget, "precision": precision}
            rows.append(run_one({**spec, "out": out, "threads": args.threads}))
            print(table(rows[-1:], list(rows[-1])), file=sys.stderr)
        print("\n## Sample quality after a fixed budget (batch 64, genzoo.train)\n")
        print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
