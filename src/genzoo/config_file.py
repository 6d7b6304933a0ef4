"""Config files of ``genzoo train --config FILE`` and the full default config ``genzoo train --print-config MODEL``
prints.

A config file is a JSON or YAML mapping: the train options under their own names (``data``, ``max_steps``,
``batch_size``, ...; the command line's options with underscores) and ``settings``, a mapping of the keys
``--set`` takes. Every key may be left out. The command line wins over the file: an option given there replaces
the file's, ``--set`` replaces the file's setting of that key, and ``--max-steps`` or ``--max-epochs`` replaces the
file's whole budget (both keys). ``--print-config`` prints every option and setting, so that
``genzoo train MODEL --config <(genzoo train --print-config MODEL)`` is exactly the plain ``genzoo train MODEL``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

from genzoo.config import build_config, config_to_dict
from genzoo.errors import GenzooError
from genzoo.registry import models

# the train options a file may hold: its key -> (genzoo.train's keyword, what the value must be)
OPTIONS: dict[str, tuple[str, str]] = {
    "data": ("data", "text"),
    "max_epochs": ("max_epochs", "a whole number or null"),
    "max_steps": ("max_steps", "a whole number or null"),
    "batch_size": ("batch_size", "a whole number"),
    "seed": ("seed", "a whole number"),
    "devices": ("devices", "a whole number or text"),
    "strategy": ("strategy", "text"),
    "precision": ("precision", "text or null"),
    "checkpoint_every": ("checkpoint_every", "a whole number"),
    "eval_every": ("eval_every", "a whole number or null"),
    "logger": ("trackers", "a tracker name or a list of them"),
}
BUDGET = ("max_epochs", "max_steps")
YAML_EXTRA = "pip install 'genzoo[yaml]'"


def _accepts(value: Any, kind: str) -> bool:
    whole = isinstance(value, int) and not isinstance(value, bool)
    if kind == "a tracker name or a list of them":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return (
        (whole and "whole number" in kind)
        or (isinstance(value, str) and "text" in kind)
        or (value is None and "null" in kind)
    )


def parse_config_text(text: str, source: str) -> Any:
    """The value a config file holds: JSON, else YAML (through PyYAML, when installed)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        if source.lower().endswith(".json"):
            raise GenzooError(f"--config {source} is not valid JSON: {json_error}") from None
    try:
        import yaml
    except ImportError:
        raise GenzooError(f"--config {source} is not JSON, and reading YAML needs PyYAML: {YAML_EXTRA}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise GenzooError(f"--config {source} is neither JSON nor YAML: {' '.join(str(err).split())}") from None


def read_config_file(path: Path, model: str) -> dict[str, Any]:
    """The options and settings of a config file, each checked: ``{key: value, "settings": {...}}``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise GenzooError(f"--config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise GenzooError(f"--config {path} is not a text file") from None
    values = parse_config_text(text, str(path))
    if values is None:  # an empty file: nothing to change
        values = {}
    if not isinstance(values, dict):
        raise GenzooError(f"--config {path} must hold a mapping of options, got {type(values).__name__}")
    settings_fields = {field.name for field in dataclasses.fields(models.get(model).Config)}
    for key, value in values.items():
        if key == "model":
            if value != model:
                raise GenzooError(f"--config {path} is for model {value!r}, not {model}")
        elif key == "settings":
            if not isinstance(value, dict):
                raise GenzooError(f"--config {path}: settings must be a mapping of --set keys to values")
        elif key in OPTIONS:
            if not _accepts(value, OPTIONS[key][1]):
                raise GenzooError(f"--config {path}: {key} must be {OPTIONS[key][1]}, got {value!r}")
        elif key in settings_fields:
            raise GenzooError(f"--config {path}: {key!r} is a setting of {model}; put it under settings:")
        else:
            valid = ", ".join(["model", *OPTIONS, "settings"])
            raise GenzooError(f"--config {path}: unknown key {key!r}; valid keys: {valid}")
    return {key: value for key, value in values.items() if key != "model"}


def train_arguments(
    model: str, given: dict[str, Any], assignments: dict[str, Any], config: Path | None
) -> dict[str, Any]:
    """Keyword arguments of :func:`genzoo.train` from the options given on the command line (``given``, by
    option name; the others left out), ``--set`` assignments and a config file, the command line winning."""
    models.get(model)  # an unknown model is named before its config file is read
    from_file = read_config_file(config, model) if config is not None else {}
    if any(key in given for key in BUDGET):
        from_file = {key: value for key, value in from_file.items() if key not in BUDGET}
    options = {**from_file, **given}
    arguments = {OPTIONS[key][0]: value for key, value in options.items() if key in OPTIONS}
    arguments["settings"] = {**from_file.get("settings", {}), **assignments}
    if isinstance(arguments.get("trackers"), str):
        arguments["trackers"] = [arguments["trackers"]]
    return arguments


def full_config(model: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Every option and setting of a run of ``model`` with ``arguments`` (defaults filled in), as a config file
    holds them."""
    from genzoo.api import DEFAULT_EPOCHS, train
    from genzoo.trackers import check_trackers

    spec = models.get(model)
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(train).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    chosen = {**defaults, **arguments}
    if chosen["max_steps"] is None and chosen["max_epochs"] is None:  # the model's own budget, as train runs it
        chosen["max_steps"] = spec.default_batches
        chosen["max_epochs"] = DEFAULT_EPOCHS if spec.default_batches is None else None
    chosen["data"] = chosen["data"] or spec.default_data
    chosen["trackers"] = ["csv", *(name for name in check_trackers(chosen["trackers"]) if name != "csv")]
    settings = config_to_dict(build_config(spec.Config, chosen["settings"] or {}))
    return {"model": model, **{key: chosen[name] for key, (name, _) in OPTIONS.items()}, "settings": settings}
