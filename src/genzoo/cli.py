"""The ``genzoo`` command: a thin typer layer over the Python API. Errors are one line and exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import Abort, TyperException

from genzoo.errors import GenzooError, Interrupted

app = typer.Typer(
    help="genzoo: train, sample and evaluate the classic deep generative models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command("list")
def list_command(
    budgets: Annotated[
        bool, typer.Option("--budgets", help="What `genzoo train MODEL` runs without flags, and about how long.")
    ] = False,
) -> None:
    """List the registered models (by family) and datasets."""
    import genzoo
    from genzoo.data import dataset_names
    from genzoo.registry import models

    if budgets:
        for line in default_budgets():
            typer.echo(line)
        return
    by_family: dict[str, list[str]] = {}
    for name in genzoo.list_models():
        by_family.setdefault(models.get(name).family, []).append(name)
    for family, names in sorted(by_family.items()):
        typer.echo(f"{family}: {', '.join(names)}")
    typer.echo(f"datasets: {', '.join(dataset_names())}")


def default_budgets() -> list[str]:
    """One line per model: default data, budget and precision of the plain `genzoo train MODEL`, with the time its
    zoo entry took per batch scaled to that budget (the zoo card names the machine)."""
    import genzoo
    from genzoo import zoo
    from genzoo.api import DEFAULT_EPOCHS
    from genzoo.registry import models

    zoo_entries: dict[str, dict] = {}  # each model's first entry by name, every card read once
    for card in map(zoo.card, zoo.names()):
        zoo_entries.setdefault(card["model"], card)
    lines = []
    for name in genzoo.list_models():
        spec = models.get(name)
        budget = f"{spec.default_batches:,} batches" if spec.default_batches else f"{DEFAULT_EPOCHS} epochs"
        line = f"{name}: {spec.default_data}, {budget}, {spec.precision}"
        entry = zoo_entries.get(name)
        if entry and spec.default_batches and entry["training"]["batches"]:
            training = entry["training"]
            minutes = training["minutes"] * spec.default_batches / training["batches"]
            threads = training["machine"]["threads"]
            line += f", about {minutes:.0f} min ({threads} thread{'s' * (threads > 1)}, as its zoo entry trained)"
        lines.append(line)
    return lines


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name (see `genzoo list`).")],
    data: Annotated[
        Optional[str],
        typer.Option(help="Dataset name, folder:PATH or folders:PATH_A,PATH_B (default: the model's, usually mnist)."),
    ] = None,
    max_epochs: Annotated[
        Optional[int], typer.Option(help="Epochs to train (default: the model's measured budget in batches, else 10).")
    ] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Batches to train (overrides the defaults).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch per device.")] = 64,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/MODEL[-N]).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    devices: Annotated[str, typer.Option(help="Devices per node, passed to Lightning (1, 2, auto).")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ...")] = "auto",
    precision: Annotated[
        Optional[str],
        typer.Option(
            help="Lightning precision: 32-true or bf16-mixed (default: the model's, bf16 only where native here)."
        ),
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Batches between checkpoints.")] = 100,
    eval_every: Annotated[
        Optional[int],
        typer.Option(help="Batches between evaluations on the test split, drawn in curves.png (default: at the end)."),
    ] = None,
    logger: Annotated[
        Optional[list[str]],
        typer.Option(help="Tracker beside the CSV log: tensorboard, wandb or mlflow (repeatable; default csv)."),
    ] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Model setting key=value (repeatable).")] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(help="JSON or YAML file of options and settings (see --print-config); the command line wins."),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the run's full config (JSON) instead of training.")
    ] = False,
) -> None:
    """Train MODEL and write samples.png, metrics.json and model.safetensors into its run directory."""
    import genzoo
    from genzoo.config import parse_assignments
    from genzoo.config_file import OPTIONS, full_config, train_arguments
    from genzoo.runs import json_text

    if config is not None and resume:
        raise GenzooError("--resume continues the run's own config; --config is for new runs")
    # by the source's name: typer ships its own copy of click, whose ParameterSource is not click's
    given = {key: ctx.params[key] for key in OPTIONS if ctx.get_parameter_source(key).name != "DEFAULT"}
    arguments = train_arguments(model, given, parse_assignments(set_ or []), config)
    if print_config:
        typer.echo(json.dumps(full_config(model, arguments), indent=2))
        return
    run = genzoo.train(model, out=out, resume=resume, **arguments)
    if run.metrics:
        typer.echo(json_text(_headline(run.metrics)))
        typer.echo(f"samples: {run.path / 'samples.png'}")
        typer.echo(f"metrics: {run.path / 'metrics.json'}")


def _headline(metrics: dict) -> dict:
    keys = (
        "model", "data", "nll_nats", "bits_per_dim", "frechet_distance", "code_accuracy", "train_images_per_second",
        "evaluation_skipped",
    )  # fmt: skip
    return {k: metrics[k] for k in keys if k in metrics}


def sample_options(model: object, args: list[str]) -> dict[str, object]:
    """``["--code", "3"]`` -> ``{"code": 3}``, typed by the model's ``sample`` signature; a ``bool`` option is a
    flag without a value (``--allow-unknown``)."""
    import inspect
    import typing

    parameters = dict(list(inspect.signature(model.sample).parameters.items())[1:])
    hints = typing.get_type_hints(model.sample)
    accepted = ", ".join(f"--{name.replace('_', '-')}" for name in parameters) or "none"
    options: dict[str, object] = {}
    rest = list(args)
    while rest:
        flag = rest.pop(0)
        name = flag.removeprefix("--").replace("-", "_")
        if not flag.startswith("--") or name not in parameters:
            raise GenzooError(f"{model.name} has no sample option {flag}; accepted: {accepted}")
        kind = hints.get(name, str)
        if kind is bool:
            options[name] = True
            continue
        if not rest:
            raise GenzooError(f"sample option {flag} needs a value")
        value = rest.pop(0)
        try:
            options[name] = kind(value) if kind in (int, float, str) else value
        except ValueError:
            raise GenzooError(f"{flag}: expected {kind.__name__}, got {value!r}") from None
    return options


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sample(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="Run directory or zoo name (see `genzoo zoo`).")],
    n: Annotated[int, typer.Option(help="Number of samples.")] = 64,
    out: Annotated[Path, typer.Option(help="PNG file for the grid.")] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    vocabulary: Annotated[
        bool, typer.Option("--vocabulary", help="Print the words a text2image model's captions may use, and exit.")
    ] = False,
) -> None:
    """Draw N samples from a trained run and save them as a PNG grid (model options as --name value).

    text2image: --text "the digit seven is red and bold , on dark" (a model trained with captions=partial also
    takes "a red seven" or "7"; unknown words: an error; --allow-unknown)

    infogan --code 3, puzzlegan --patches a.png,b.png,c.png, supervised aae --label 3, PixelRNN --method naive"""
    import torch

    import genzoo
    from genzoo.viz import save_grid

    if not 1 <= n <= 10_000:
        raise GenzooError("--n must be between 1 and 10000")
    if out.suffix.lower() != ".png" or out.is_dir():
        raise GenzooError(f"--out must be a .png file, got {out}{' (a directory)' * out.is_dir()}")
    model = genzoo.load(run)
    if vocabulary:
        if not hasattr(model, "describe_vocabulary"):
            raise GenzooError(f"{model.name} takes no captions: --vocabulary is for text2image")
        typer.echo(model.describe_vocabulary())
        return
    options = sample_options(model, ctx.args)
    torch.manual_seed(seed)
    images = genzoo.sample_images(model, n, model.run_config.get("levels", 256), **options)
    save_grid(images, out, scale=max(1, 56 // model.image_shape[-1]))
    typer.echo(f"samples: {out}")


@app.command("eval")
def eval_command(
    run: Annotated[Path, typer.Argument(help="Run directory or zoo name (see `genzoo zoo`).")],
    data: Annotated[Optional[str], typer.Option(help="Dataset (default: the one it was trained on).")] = None,
) -> None:
    """Evaluate a trained run on a test split and print the metrics as JSON."""
    import genzoo
    from genzoo.runs import json_text

    model = genzoo.load(run)
    typer.echo(json_text(genzoo.evaluate(model, data)))


@app.command()
def zoo(
    name: Annotated[Optional[str], typer.Argument(help="An entry: print its card (default: the table).")] = None,
) -> None:
    """The pretrained zoo: every entry with its data, metric beside the paper's, and size; or one entry's card."""
    from genzoo import zoo as entries

    if name is not None:
        typer.echo(json.dumps(entries.card(name), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "model", "data", "metric", "genzoo", "paper", "MB", box=None)
    for entry in map(entries.card, entries.names()):
        headline, paper = entry.get("headline", {}), entry.get("paper", {})
        table.add_row(
            entry["name"],
            entry["model"],
            entry["config"]["data"],
            headline.get("metric", "-"),
            _number(headline.get("value")),
            _number(paper.get("value")),
            f"{entry['weights']['bytes'] / 1e6:.1f}",
        )
    Console(width=160).print(table)


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


metrics_app = typer.Typer(help="The sample-quality metric suite's feature networks.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("train-features")
def train_features(
    data: Annotated[str, typer.Option(help="Labelled dataset to train the feature classifier on.")] = "mnist",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Directory for DATA.safetensors + DATA.json (default: GENZOO_CACHE_DIR/features)."),
    ] = None,
) -> None:
    """Train the small per-dataset classifier whose features the sample metrics (FID-style, KID, ...) use."""
    from genzoo.metrics.features import save_feature_net, train_feature_net, weights_dir

    if epochs < 1:
        raise GenzooError("--epochs must be at least 1")
    net, card = train_feature_net(data, epochs=epochs, seed=seed)
    path = save_feature_net(net, card, out)
    typer.echo(f"feature net: {path} (test accuracy {card['test_accuracy']:.4f} on {card['test_images']} images)")
    shipped = weights_dir() / path.name
    if shipped.is_file() and shipped.resolve() != path.resolve():
        typer.echo(f"the metrics keep using the shipped {shipped} (to replace it in a checkout: --out {weights_dir()})")


@app.command()
def interpolate(
    run: Annotated[Path, typer.Argument(help="Run directory or zoo name of a latent variable model (vae, aae).")],
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder for the PNG and GIF files (default: the run directory; a zoo name: .)."),
    ] = None,
    pairs: Annotated[int, typer.Option(help="Pairs of test images to interpolate between.")] = 8,
    steps: Annotated[int, typer.Option(help="Images per interpolation / traversal row.")] = 10,
    spherical: Annotated[bool, typer.Option(help="Spherical instead of linear interpolation.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed (choice of test images).")] = 0,
) -> None:
    """Interpolation, latent traversal, reconstructions and (2-D latents) the manifold plot, as PNG grids; the
    interpolations and traversals also as animated GIFs."""
    from genzoo.latent_exploration import explore_run

    if pairs < 1 or steps < 2:
        raise GenzooError("--pairs must be at least 1 and --steps at least 2")
    for path in explore_run(run, out, pairs=pairs, steps=steps, spherical=spherical, seed=seed).values():
        typer.echo(f"wrote {path}")


@app.command()
def translate(
    run: Annotated[Path, typer.Argument(help="Run directory or zoo name of a translation model (cyclegan, stargan).")],
    input: Annotated[Path, typer.Option(help="PNG/JPEG image to translate.")],
    to: Annotated[
        str, typer.Option(help="Target: A or B (cyclegan); attributes such as thick,red or Blond_Hair,-Male (stargan).")
    ],
    out: Annotated[Optional[Path], typer.Option(help="PNG of input and translation (default INPUT-to-TO.png).")] = None,
) -> None:
    """Translate one image with a trained translation model; writes the input and its translation side by side."""
    from genzoo.models.translation.base import translate_file

    typer.echo(f"translation: {translate_file(run, input, to, out)}")


@app.command()
def serve(
    sources: Annotated[
        Optional[list[str]], typer.Argument(help="Run directories or zoo names (default: every zoo entry).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; another than 127.0.0.1 is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Explore the models in a web browser: gallery, likelihood of a drawn digit, latent walks, InfoGAN codes,
    text to image, translation, Puzzle-GAN, Progressive GAN (needs the web extra: pip install 'genzoo[web]')."""
    from genzoo.web import serve as serve_models

    serve_models(sources or [], host, port)


@app.command()
def count(
    pixels: Annotated[int, typer.Argument(help="Number of binary pixels n.")],
    order: Annotated[int, typer.Option(help="Markov order k.")] = 2,
    hidden: Annotated[int, typer.Option(help="NADE hidden units.")] = 500,
) -> None:
    """Parameters needed for n binary pixels under each factorization."""
    from genzoo.models import structured as s

    if pixels < 1:
        raise GenzooError("pixels must be at least 1")
    rows = {
        "full joint": s.full_joint_parameters(pixels),
        "independent": s.independent_parameters(pixels),
        f"markov (k={order})": s.markov_parameters(pixels, order),
        "fvsbn": s.fvsbn_parameters(pixels),
        f"nade (h={hidden})": s.nade_parameters(pixels, hidden),
    }
    for name, value in rows.items():
        typer.echo(f"{name:>16}: {value:.4g}" if value > 1e15 else f"{name:>16}: {value:,}")


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except TyperException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # bare `genzoo` or `genzoo metrics`: show the help
            typer.echo(err.format_message())
        else:  # usage errors: one line, like every other error
            typer.echo(f"error: {err.format_message()}", err=True)
        sys.exit(2)
    except Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Interrupted as err:
        typer.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except GenzooError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except OSError as err:  # the machine refused something genzoo does not write through runs.atomic_open
        typer.echo(f"error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
