"""Typed model configs: dataclasses whose fields can be set from ``--set key=value`` strings."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any

from genzoo.errors import GenzooError


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["hidden=500", "lr=1e-3"]`` -> ``{"hidden": "500", "lr": "1e-3"}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GenzooError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _convert(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _convert(text, options[0], key)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if text not in choices:
            raise GenzooError(f"--set {key}: expected one of {', '.join(map(str, choices))}, got {text!r}")
        return text
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise GenzooError(f"--set {key}: expected true/false, got {text!r}")
    if origin in (tuple, list):
        (item,) = set(typing.get_args(kind)) - {Ellipsis} or {str}
        parts = [p for p in text.strip("()[]").split(",") if p.strip()]
        return origin(_convert(p.strip(), item, key) for p in parts)
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise GenzooError(f"--set {key}: expected {getattr(kind, '__name__', kind)}, got {text!r}") from None


def _check_type(value: Any, kind: Any, key: str) -> Any:
    """A typed value (from Python or a stored config.json) of the field's type, or a one-line error; a JSON list
    becomes the tuple the field holds, an int a float where the field is one."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return (
            None if value is None and len(options) < len(typing.get_args(kind)) else _check_type(value, options[0], key)
        )
    if origin is typing.Literal:
        if value not in typing.get_args(kind):
            raise GenzooError(
                f"setting {key}: expected one of {', '.join(map(str, typing.get_args(kind)))}, got {value!r}"
            )
        return value
    if origin in (tuple, list):
        (item,) = set(typing.get_args(kind)) - {Ellipsis} or {str}
        if not isinstance(value, (list, tuple)):
            raise GenzooError(f"setting {key}: expected a list, got {value!r}")
        return tuple(_check_type(v, item, key) for v in value)
    accepted = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(kind)
    if accepted is None:
        return value
    if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
        raise GenzooError(f"setting {key}: expected {kind.__name__}, got {value!r}")
    return float(value) if kind is float else value


def _check_ranges(config: Any) -> None:
    """What no field of any model may hold: a negative count or size, or a non-finite number."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value < 0:
            raise GenzooError(f"setting {field.name} must be at least 0, got {value}")
        if isinstance(value, float) and not math.isfinite(value):
            raise GenzooError(f"setting {field.name} must be a finite number, got {value}")


def build_config(config_cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``config_cls`` from values that may be strings (from the CLI) or typed (from Python/JSON);
    every value is checked against its field's type."""
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise GenzooError(f"unknown setting {key!r} for {config_cls.__name__}; valid keys: {', '.join(names)}")
        if isinstance(value, str) and hints[key] is not str:
            value = _convert(value, hints[key], key)
        kwargs[key] = _check_type(value, hints[key], key)
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise GenzooError(f"invalid settings for {config_cls.__name__}: {err}") from None
    _check_ranges(config)
    return config


def added_later(default: Any, before: Any) -> Any:
    """A config field added after runs were stored: ``default`` for new runs, ``before`` (what runs stored without
    the field were trained with) when such a run is loaded or resumed; see :func:`stored_settings`. A field that
    was there from a model's first release, or whose default reproduces what came before it, needs none."""
    return dataclasses.field(default=default, metadata={"before": before})


def stored_settings(config_cls: type, settings: dict[str, Any]) -> dict[str, Any]:
    """A stored run's settings, with every :func:`added_later` field it lacks set to its ``before`` value, so
    loading or resuming an older run rebuilds the model it trained, not today's defaults."""
    before = {f.name: f.metadata["before"] for f in dataclasses.fields(config_cls) if "before" in f.metadata}
    return {**before, **settings}  # a stored value wins


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-safe dict of a config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
