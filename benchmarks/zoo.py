"""Rebuild the pretrained zoo (src/genzoo/zoo/): train each entry with the command its card prints, then pack it.

    GENZOO_DATA_DIR=../shared/data python benchmarks/zoo.py train NAME [NAME ...] | all   # trains, then packs
    python benchmarks/zoo.py pack NAME --run DIR [--run DIR ...]    # packs finished runs (one per seed)
    python benchmarks/zoo.py commands                               # every entry's training command
    python benchmarks/zoo.py table | figures     # the README's zoo table (rewritten in place), docs/figures/NAME.png

``RECIPES`` is the one place the entries' commands live: ``train`` runs exactly ``genzoo train ...`` as written
here, and ``pack`` copies the same command into the card (a test checks that every card's command is its
recipe's and parses). Packing keeps what inference needs (``training_only_modules`` are dropped), stores the
floating tensors in float16 when the headline metric of the shipped weights is unchanged within its noise
(``within_tolerance``; else float32), evaluates the shipped entry with ``genzoo.evaluate`` (what ``genzoo eval
NAME`` prints) and writes the card. With several runs (seeds) it ships the best by the headline metric and lists
every seed. A run trained with ``--eval-every`` gives the card its learning curve (the test metric against
batches).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save

import genzoo
from genzoo import runs, zoo
from genzoo.api import evaluate, load
from genzoo.registry import models

RUNS = Path("runs/zoo")
# the largest change of the headline metric that float16 storage may cause: likelihoods in nats, the rest relative
TOLERANCE = {"nats": 0.02, "relative": 0.01}
BINARIZED = "--data binarized-mnist"


@dataclass(frozen=True)
class Paper:
    citation: str
    value: float | None = None  # the paper's number for the headline metric, where it reports one on this data
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    model: str
    arguments: str  # after `genzoo train MODEL`, before `--seed S`
    metric: str  # the headline key of `genzoo eval`
    paper: Paper
    target: str = ""
    seeds: tuple[int, ...] = (0,)
    lower_is_better: bool = False
    notes: list[str] = field(default_factory=list)

    def command(self, seed: int) -> str:
        return " ".join(["genzoo train", self.model, self.arguments, f"--seed {seed}"]).replace("  ", " ")


NADE_PAPER = "Larochelle & Murray, The Neural Autoregressive Distribution Estimator, AISTATS 2011"
PIXEL_RNN = "van den Oord, Kalchbrenner & Kavukcuoglu, Pixel Recurrent Neural Networks, ICML 2016"
IWAE = "Burda, Grosse & Salakhutdinov, Importance Weighted Autoencoders, ICLR 2016"
ADVERSARIAL_SEEDS = (0, 1)

RECIPES: dict[str, Recipe] = {
    "independent": Recipe(
        "independent", f"{BINARIZED} --max-epochs 3", "nll_nats", Paper("the lecture's baseline"), lower_is_better=True
    ),
    "markov": Recipe(
        "markov", f"{BINARIZED} --max-epochs 3", "nll_nats", Paper("the lecture's baseline"), lower_is_better=True
    ),
    "fvsbn": Recipe(
        "fvsbn",
        f"{BINARIZED} --max-steps 39050 --set decay_fraction=1",
        "nll_nats",
        Paper(NADE_PAPER, 97.45, "table 2, fully visible sigmoid belief network"),
        "<= 97.5 nats",
        lower_is_better=True,
    ),
    "nade": Recipe(
        "nade",
        f"{BINARIZED} --max-steps 3905 --set decay_fraction=1",
        "nll_nats",
        Paper(NADE_PAPER, 88.33, "500 hidden units, fixed order (88.33 in Uria et al., JMLR 2016; 88.86 in 2011)"),
        "<= 88.5 nats",
        lower_is_better=True,
    ),
    "rnade": Recipe(
        "rnade",
        "",
        "nll_nats",
        Paper("Uria, Murray & Larochelle, RNADE, NeurIPS 2013", None, "no MNIST number in the paper"),
        lower_is_better=True,
    ),
    "pixelcnn": Recipe(
        "pixelcnn",
        f"{BINARIZED} --max-steps 1562",
        "nll_nats",
        Paper(PIXEL_RNN, 81.30, "table 4, binarized MNIST (7 layers, trained to convergence)"),
        "<= 84 nats",
        lower_is_better=True,
    ),
    "row_lstm": Recipe(
        "row_lstm",
        f"{BINARIZED} --max-steps 781",
        "nll_nats",
        Paper(PIXEL_RNN, None, "the paper gives no binarized-MNIST number for the Row LSTM"),
        "<= 85 nats",
        lower_is_better=True,
    ),
    "diagonal_bilstm": Recipe(
        "diagonal_bilstm",
        f"{BINARIZED} --max-steps 390",
        "nll_nats",
        Paper(PIXEL_RNN, 79.20, "table 4, binarized MNIST"),
        "<= 85 nats, and the best of the three PixelRNN-family models at equal epochs",
        lower_is_better=True,
    ),
    "vae": Recipe(
        "vae",
        f"{BINARIZED} --max-steps 15620 --set decay_fraction=1 --set eval_k=1000",
        "nll_nats",
        Paper(IWAE, 86.76, "VAE, one stochastic layer, k = 1 (test NLL by the k = 5000 estimate)"),
        "<= 88.0 nats (IWAE estimate, k = 1000)",
        lower_is_better=True,
    ),
    "vae-iwae": Recipe(
        "vae",
        f"{BINARIZED} --max-steps 15620 --set decay_fraction=1 --set objective=iwae --set k=5 --set eval_k=1000 "
        "--eval-every 1562",
        "nll_nats",
        Paper(IWAE, 85.54, "IWAE, one stochastic layer, k = 5"),
        "<= 87.0 nats (IWAE estimate, k = 1000)",
        lower_is_better=True,
    ),
    "aae": Recipe(
        "aae",
        "",
        "parzen_log_likelihood_nats",
        Paper("Makhzani et al., Adversarial Autoencoders, ICLR 2016 workshop", 340, "Parzen window, MNIST (±2)"),
        seeds=ADVERSARIAL_SEEDS,
    ),
    "gan": Recipe(
        "gan",
        "",
        "parzen_log_likelihood_nats",
        Paper("Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014", 225, "Parzen window, MNIST (± 2)"),
        seeds=ADVERSARIAL_SEEDS,
    ),
    "dcgan": Recipe(
        "dcgan",
        "",
        "frechet_distance",
        Paper("Radford, Metz & Chintala, DCGAN, ICLR 2016", None, "no sample metric on MNIST in the paper"),
        seeds=ADVERSARIAL_SEEDS,
        lower_is_better=True,
    ),
    "infogan": Recipe(
        "infogan",
        "",
        "code_accuracy",
        Paper("Chen et al., InfoGAN, NeurIPS 2016", 0.95, "categorical code classifies MNIST with 5% error"),
        ">= 0.95",
        seeds=ADVERSARIAL_SEEDS,
    ),
    "progan": Recipe(
        "progan",
        "",
        "frechet_distance",
        Paper("Karras et al., Progressive Growing of GANs, ICLR 2018", None, "no MNIST number in the paper"),
        seeds=ADVERSARIAL_SEEDS,
        lower_is_better=True,
    ),
    "puzzlegan": Recipe(
        "puzzlegan",
        "",
        "mask_iou",
        Paper("Lee et al., Unsupervised Holistic Image Generation from Key Local Patches, ECCV 2018"),
        seeds=ADVERSARIAL_SEEDS,
    ),
    "cyclegan": Recipe(
        "cyclegan",
        "",
        "a_to_b_target_accuracy",
        Paper("Zhu et al., Unpaired Image-to-Image Translation (CycleGAN), ICCV 2017"),
        "target and class >= 0.90 both ways",
        seeds=ADVERSARIAL_SEEDS,
    ),
    "stargan": Recipe(
        "stargan",
        "",
        "mean_attribute_accuracy",
        Paper("Choi et al., StarGAN, CVPR 2018"),
        "every attribute >= 0.90",
        seeds=ADVERSARIAL_SEEDS,
    ),
    "text2image": Recipe(
        "text2image",
        "",
        "held_out_caption_match",
        Paper("Reed et al., Generative Adversarial Text to Image Synthesis, ICML 2016"),
        ">= 0.85",
        seeds=ADVERSARIAL_SEEDS,
    ),
}


def machine() -> dict[str, object]:
    from genzoo.engine import native_bf16

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "native_bf16": native_bf16(),
        "torch": torch.__version__,
        "genzoo": genzoo.__version__,
    }


def train(name: str, seeds: tuple[int, ...] | None = None) -> list[Path]:
    recipe = RECIPES[name]
    run_dirs = []
    for seed in seeds or recipe.seeds:
        run_dir = RUNS / f"{name}-seed{seed}"
        command = shlex.split(recipe.command(seed)) + ["--out", str(run_dir)]
        if (run_dir / runs.CONFIG).exists():
            command.append("--resume")  # an interrupted run continues exactly; a finished one trains no batch
        print("$", shlex.join(command), flush=True)
        subprocess.run([sys.executable, "-m", "genzoo", *command[1:]], check=True)
        run_dirs.append(run_dir)
    return run_dirs


def headline(metrics: dict, recipe: Recipe) -> float:
    if recipe.metric not in metrics or metrics[recipe.metric] is None:
        raise SystemExit(f"the run's metrics have no {recipe.metric}")
    return float(metrics[recipe.metric])


def within_tolerance(reference: float, value: float, metric: str, metrics: dict) -> bool:
    """Whether float16 storage left the headline where float32 had it: within a likelihood's 0.02 nats, a Parzen
    estimate's own standard error (its noise is nats, not a share of it), else 1%."""
    if metric == "nll_nats":
        return abs(value - reference) <= TOLERANCE["nats"]
    if metric == "parzen_log_likelihood_nats":
        return abs(value - reference) <= metrics["parzen_standard_error"]
    return abs(value - reference) <= TOLERANCE["relative"] * max(abs(reference), 1e-12)


def write_entry(name: str, tensors: dict[str, torch.Tensor], card: dict) -> None:
    data = save(tensors)
    runs.atomic_write_bytes(zoo.ZOO_DIR / f"{name}.safetensors", data)
    card["weights"].update(
        file=f"{name}.safetensors", bytes=len(data), sha256=zoo.sha256(zoo.ZOO_DIR / f"{name}.safetensors")
    )
    runs.write_json(zoo.ZOO_DIR / f"{name}.json", card)


def check_subset(model: genzoo.models.base.GenerativeModel) -> dict | None:
    """For likelihood entries: the test NLL of the first 1,000 test images, which the tests recompute."""
    if getattr(model, "family", "") != "likelihood":
        return None
    from genzoo.data import load_dataset
    from genzoo.data.transforms import prepare_test

    dataset = load_dataset(model.run_config["data"])
    x = prepare_test(dataset.test[:1000], model.input_kind, dataset.levels)
    metrics = model.evaluate(x, None, dataset.levels, data=model.run_config["data"])
    return {"test_images": 1000, "nll_nats": metrics["nll_nats"], "data_source": dataset.source}


def learning_curve(run_dir: Path, metric: str) -> list[list[float]] | None:
    """[batches, test metric] pairs of a run trained with ``--eval-every`` (its curves.csv), else None."""
    from genzoo import curves

    _, rows = curves.read_curves(run_dir)
    key = f"test_{metric}"
    points = [[batch, round(values[key], 4)] for batch, values in rows.items() if key in values]
    return points or None


def pack(name: str, run_dirs: list[Path]) -> dict:
    recipe = RECIPES[name]
    # every seed scored by today's evaluation of its fp32 weights (what `genzoo eval RUN` prints); the best ships
    scores = {d: headline(evaluate(load(d)), recipe) for d in run_dirs}
    shipped = (min if recipe.lower_is_better else max)(scores, key=scores.get)
    config = runs.read_run_config(shipped)
    trained = runs.read_json(shipped / runs.METRICS)
    model = load(shipped)
    reference = scores[shipped]
    seeds = [
        {"seed": runs.read_json(d / runs.CONFIG)["seed"], recipe.metric: score, "shipped": d == shipped}
        for d, score in scores.items()
    ]
    card = {
        "name": name,
        "model": recipe.model,
        "family": models.get(recipe.model).family,
        "paper": {"citation": recipe.paper.citation, "value": recipe.paper.value, "note": recipe.paper.note},
        "target": recipe.target,
        "command": recipe.command(config["seed"]),
        "config": config,
        "seed": config["seed"],
        "seeds": seeds,
        "training": {
            "batches": trained.get("train_batches"),
            "minutes": round(trained.get("train_seconds", 0) / 60, 1),
            "images_per_second": round(trained.get("train_images_per_second", 0)),
            "precision": trained.get("train_precision"),
            "machine": {**machine(), "threads": trained.get("train_threads")},
        },
        "weights": {"dropped": list(model.training_only_modules())},
    }
    curve = learning_curve(shipped, recipe.metric)
    if curve:
        card["learning_curve"] = {"metric": f"test {recipe.metric}", "points": curve}
    for dtype in (torch.float16, torch.float32):
        card["weights"]["dtype"] = str(dtype).removeprefix("torch.")
        write_entry(name, zoo.inference_tensors(model, dtype), card)
        metrics = evaluate(zoo.load(name))
        value = headline(metrics, recipe)
        if dtype == torch.float32 or within_tolerance(reference, value, recipe.metric, metrics):
            break
        print(f"{name}: float16 moves {recipe.metric} {reference:.4g} -> {value:.4g}; storing float32")
    card["headline"] = {"metric": recipe.metric, "value": value, "float32_value": reference}
    card["metrics"] = metrics
    subset = check_subset(zoo.load(name))
    if subset:
        card["check"] = subset
    write_entry(name, zoo.inference_tensors(model, getattr(torch, card["weights"]["dtype"])), card)
    print(json.dumps({k: card[k] for k in ("name", "headline", "seeds")}, indent=1))
    return card


ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
README = ROOT / "README.md"
BEGIN, END = "<!-- zoo: begin -->", "<!-- zoo: end -->"
FAMILY_ORDER = ("likelihood", "latent", "adversarial", "translation")


def table() -> str:
    """The README's zoo table (markdown), one row per entry, the lecture's order."""
    rows = [
        "| entry | data | training | metric | genzoo | paper | target | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cards = sorted(map(zoo.card, zoo.names()), key=lambda c: (FAMILY_ORDER.index(c["family"]), c["name"]))
    for card in cards:
        training = card["training"]
        seeds = f", {len(card['seeds'])} seeds" if len(card["seeds"]) > 1 else ""
        paper = card["paper"]["value"]
        rows.append(
            f"| `{card['name']}` | {card['config']['data']} | {training['batches']:,} batches, "
            f"{training['minutes']} min{seeds} | {card['headline']['metric']} | {number(card['headline']['value'])} | "
            f"{'-' if paper is None else number(paper)} | {card['target'] or '-'} | `{card['command']}` |"
        )
    return "\n".join(rows)


def number(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def figures() -> None:
    """docs/figures/: 32 samples of every entry (seed 0, what `genzoo sample NAME --n 32` draws), InfoGAN's
    traversals of its codes, and the latent models' interpolations and traversals (`genzoo interpolate NAME`)."""
    from genzoo.latent_exploration import explore_run
    from genzoo.viz import save_grid

    FIGURES.mkdir(parents=True, exist_ok=True)
    for name in zoo.names():
        model = load(name)
        scale = max(1, 56 // model.image_shape[-1])
        levels = model.run_config.get("levels", 256)
        torch.manual_seed(0)
        print(save_grid(genzoo.sample_images(model, 32, levels), FIGURES / f"{name}.png", columns=8, scale=scale))
        if model.name == "infogan":
            for code in ("categorical", "c1"):
                grid = genzoo.sample_images(model, 1, levels, traverse=code)
                print(save_grid(grid, FIGURES / f"{name}-{code}.png", columns=model.config.categories, scale=scale))
        if model.family == "latent":
            for path in explore_run(name, FIGURES / f"{name}-explore", pairs=4, steps=8).values():
                print(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train")
    t.add_argument("names", nargs="+")
    t.add_argument("--seeds", type=int, nargs="*")
    p = sub.add_parser("pack")
    p.add_argument("name", choices=sorted(RECIPES))
    p.add_argument("--run", type=Path, action="append", required=True)
    sub.add_parser("commands")
    sub.add_parser("table")
    sub.add_parser("figures")
    args = parser.parse_args()
    if args.action == "commands":
        for name, recipe in RECIPES.items():
            for seed in recipe.seeds:
                print(f"{name}: {recipe.command(seed)}")
    elif args.action == "table":
        text = README.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
        head, rest = text.split(BEGIN, 1)
        README.write_text(f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}")
        print(table())
    elif args.action == "figures":
        figures()
    elif args.action == "train":
        for name in sorted(RECIPES) if args.names == ["all"] else args.names:
            pack(name, train(name, tuple(args.seeds) if args.seeds else None))
    else:
        pack(args.name, args.run)


if __name__ == "__main__":
    main()
