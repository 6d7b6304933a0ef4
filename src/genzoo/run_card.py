"""The model card of a run directory: ``README.md``, written at the end of every training session.

It says what the run is and how to make it again: the model and its paper, the data and where it came from, the
budget and what training cost, the metrics (headline first), the settings that differ from the model's defaults,
and a ``genzoo train`` command that trains the same run from scratch (exact resume makes a resumed run equal to
it). The fields follow the zoo's cards (``benchmarks/zoo.py``), which add the paper's numbers and several seeds.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from genzoo.config import build_config, config_to_dict
from genzoo.registry import models
from genzoo.runs import atomic_write_bytes

CARD = "README.md"
PIXELRNN = "van den Oord, Kalchbrenner & Kavukcuoglu, Pixel Recurrent Neural Networks, ICML 2016"
PAPERS: dict[str, str] = {
    "independent": "independent Bernoulli pixels: the baseline every factorization is measured against",
    "markov": "a k-th order Markov chain over the pixels in raster order",
    "fvsbn": "Frey, fully visible sigmoid belief networks (Graphical Models for Machine Learning, 1998)",
    "nade": "Larochelle & Murray, The Neural Autoregressive Distribution Estimator, AISTATS 2011",
    "rnade": "Uria, Murray & Larochelle, RNADE: the real-valued neural autoregressive density-estimator, NeurIPS 2013",
    "row_lstm": PIXELRNN,
    "diagonal_bilstm": PIXELRNN,
    "pixelcnn": PIXELRNN,
    "vae": "Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014",
    "aae": "Makhzani, Shlens, Jaitly, Goodfellow & Frey, Adversarial Autoencoders, ICLR workshop 2016",
    "gan": "Goodfellow et al., Generative Adversarial Nets, NeurIPS 2014",
    "dcgan": "Radford, Metz & Chintala, Unsupervised Representation Learning with Deep Convolutional GANs, ICLR 2016",
    "infogan": "Chen et al., InfoGAN: Interpretable Representation Learning by Information Maximizing GANs, "
    "NeurIPS 2016",
    "text2image": "Reed et al., Generative Adversarial Text to Image Synthesis, ICML 2016",
    "puzzlegan": "Lee, Yun, Choi, Yoo, Yang & Oh, Unsupervised Holistic Image Generation from Key Local Patches, "
    "ECCV 2018",
    "cyclegan": "Zhu, Park, Isola & Efros, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial "
    "Networks, ICCV 2017",
    "stargan": "Choi et al., StarGAN: Unified GANs for Multi-Domain Image-to-Image Translation, CVPR 2018",
    "progan": "Karras, Aila, Laine & Lehtinen, Progressive Growing of GANs, ICLR 2018",
}
# the metric a model is known by, in this order of preference where a run has several
HEADLINE_METRICS = ("nll_nats", "iwae_nll_nats", "frechet_distance", "code_accuracy", "caption_match")
# metrics.json keys the card shows in its own lines rather than in the metrics table
DESCRIBED = ("model", "data", "data_source", "evaluation_skipped")


def paper_of(model: str) -> str:
    """The citation of a registered model's paper; for a model without one here, the first paragraph of its
    module's docstring (which names the paper, by the project's rule for model files)."""
    if model in PAPERS:
        return PAPERS[model]
    module = sys.modules[models.get(model).__module__]
    return " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())


def headline_metric(metrics: dict[str, Any]) -> str | None:
    """The key of the metric a run is known by, if it has one."""
    return next((key for key in HEADLINE_METRICS if isinstance(metrics.get(key), (int, float))), None)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _text(value: Any) -> str:
    """A setting as ``--set`` reads it back."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(_text, value))
    return str(value)


def changed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The stored settings of a run that differ from its model's defaults today."""
    defaults = config_to_dict(build_config(models.get(config["model"]).Config, {}))
    return {key: value for key, value in config["settings"].items() if defaults.get(key, object()) != value}


def command(config: dict[str, Any], run_dir: Path, devices: int = 1) -> str:
    """A ``genzoo train`` command that trains this run from scratch: every choice stored in its config.json."""
    words = ["genzoo", "train", config["model"], "--data", config["data"]]
    for key in ("max_steps", "max_epochs"):
        if config.get(key) is not None:
            words += [f"--{key.replace('_', '-')}", str(config[key])]
    words += ["--batch-size", str(config["batch_size"]), "--seed", str(config["seed"])]
    words += ["--precision", str(config["precision"])]
    if devices > 1:
        words += ["--devices", str(devices), "--strategy", "ddp"]
    words += [part for key, value in changed_settings(config).items() for part in ("--set", f"{key}={_text(value)}")]
    return shlex.join([*words, "--out", str(run_dir)])


def card_text(
    run_dir: Path, config: dict[str, Any], metrics: dict[str, Any], parameters: int, devices: int, data_source: str
) -> str:
    """The card of a finished session as markdown."""
    model = config["model"]
    spec = models.get(model)
    summary = (spec.__doc__ or "").strip().split("\n\n")[0]
    shape = "x".join(map(str, config["image_shape"]))
    lines = [f"# {run_dir.name}: {model}", "", " ".join(summary.split()), ""]
    lines += [
        f"- **Model**: `{model}` ({spec.family} family), {parameters:,} parameters",
        f"- **Paper**: {paper_of(model)}",
        f"- **Data**: `{config['data']}`, images {shape}, {config['levels']} levels"
        + (f"; {data_source}" if data_source else ""),
    ]
    budget = ", ".join(
        f"{key.replace('_', ' ')} {config[key]:,}" for key in ("max_steps", "max_epochs") if config.get(key) is not None
    )
    processes = f" x {devices} processes" if devices > 1 else ""
    lines.append(
        f"- **Training**: {metrics.get('train_batches', 0):,} batches of {config['batch_size']}{processes} images "
        f"(budget: {budget or 'none'}), seed {config['seed']}; the last session took "
        f"{metrics.get('train_seconds', 0) / 60:.1f} min at {metrics.get('train_images_per_second', 0):,.0f} "
        f"images/s, {metrics.get('train_precision', config['precision'])}, "
        f"{metrics.get('train_threads', '?')} thread{'s' * (metrics.get('train_threads') != 1)}"
    )
    key = headline_metric(metrics)
    if key is not None:
        lines.append(f"- **Headline**: {key} = {_number(metrics[key])}")
    if metrics.get("evaluation_skipped"):
        lines.append(f"- **Evaluation skipped**: {metrics['evaluation_skipped']}")
    lines += ["", "## Command", "", "    " + command(config, run_dir, devices), ""]
    shown = {k: v for k, v in metrics.items() if k not in DESCRIBED and not k.startswith(("train_", "sample"))}
    if shown:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_number(v)} |" for k, v in sorted(shown.items(), key=lambda item: item[0] != key)]
        lines.append("")
    changed = changed_settings(config)
    lines += ["## Settings", ""]
    if changed:
        lines += ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in changed.items()), ""]
    lines += ["All other settings are the model's defaults; config.json holds every one.", ""]
    figures = sorted(p.name for p in run_dir.glob("*.png"))
    lines += ["## Files", "", *(f"![{Path(name).stem}]({name})" for name in figures)]
    lines += ["", "config.json, model.safetensors (weights), metrics.json, curves.csv, checkpoints/, logs/", ""]
    return "\n".join(lines)


def write_run_card(
    run_dir: Path,
    config: dict[str, Any],
    metrics: dict[str, Any],
    parameters: int,
    devices: int = 1,
    data_source: str = "",
) -> Path:
    """Write the run's ``README.md`` card (atomically, like every run file)."""
    path = run_dir / CARD
    atomic_write_bytes(path, card_text(run_dir, config, metrics, parameters, devices, data_source).encode())
    return path
