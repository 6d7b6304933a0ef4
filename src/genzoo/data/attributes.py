"""Named binary attributes: CelebA's list and a user's ``attributes.txt``, read by one parser, and the choice of some.

A list holds an optional count line (CelebA's first line), a header of attribute names, then one line per image:
the file name and one value per attribute, 1 for "has it" and -1 or 0 for "has it not" (CelebA writes -1; one
file may not mix -1 and 0). Values are separated by spaces, or by commas in a ``.csv`` list (Kaggle's
``list_attr_celeba.csv``); a header that names the file column too (``image_id,5_o_Clock_Shadow,...``) is read
as such. Datasets with such labels carry the names (:attr:`genzoo.data.ImageDataset.attributes`) and labels as 0/1
[N, K]; the dataset option ``?attributes=Black_Hair,Male`` keeps those columns in that order
(:func:`select_attributes`), which is how StarGAN trains on the paper's five CelebA attributes.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import numpy as np
import torch

from genzoo.data import ImageDataset
from genzoo.errors import GenzooError

ATTRIBUTE_LISTS = ("attributes.txt", "attributes.csv")  # a user's folder holds one of them


def read_attribute_list(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(attribute names, {file name: 0/1 values [K]}) from a list in the format of this module's docstring.
    Errors are one line naming the file and line."""
    separator = "," if path.suffix.lower() == ".csv" else None
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise GenzooError(f"cannot read {path} as UTF-8 text: {err}") from None
    lines = [
        (number, [part.strip() for part in line.split(separator)])
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].isdigit():
        lines = lines[1:]  # CelebA's count line
    if len(lines) < 2:
        raise GenzooError(f"{path}: expected a line of attribute names, then one line per image")
    (_, header), rows = lines[0], lines[1:]
    width = len(rows[0][1])
    names = header[1:] if len(header) == width else header
    if len(names) != width - 1 or not names:
        raise GenzooError(f"{path}:{rows[0][0]}: {width - 1} values for the {len(names)} attribute names of the header")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise GenzooError(f"{path}: attribute {twice} is named twice in the header")
    values: dict[str, np.ndarray] = {}
    signs = set()
    for number, row in rows:
        if len(row) != width or not all(v in ("-1", "0", "1") for v in row[1:]):
            raise GenzooError(f"{path}:{number}: expected a file name and {len(names)} values of 1, 0 or -1")
        if row[0] in values:
            raise GenzooError(f"{path}:{number}: {row[0]} is listed twice")
        signs |= set(row[1:])
        values[row[0]] = np.array([v == "1" for v in row[1:]], dtype=np.int64)
    if {"-1", "0"} <= signs:
        raise GenzooError(f"{path}: values mix -1 and 0 for 'has it not'; use one of them")
    return names, values


def unknown_attribute(name: str, known: tuple[str, ...] | list[str], where: str) -> GenzooError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return GenzooError(f"{where} has no attribute {name!r}{hint}; its attributes: {', '.join(known)}")


def attribute_columns(chosen: tuple[str, ...], known: tuple[str, ...] | list[str], where: str) -> list[int]:
    """The positions of the ``chosen`` names among a dataset's ``known`` attributes (``where`` names the dataset
    in errors)."""
    for name in chosen:
        if name not in known:
            raise unknown_attribute(name, known, where)
    if len(set(chosen)) != len(chosen):
        raise GenzooError(f"{where}: attributes={','.join(chosen)} names an attribute twice")
    return [list(known).index(name) for name in chosen]


def select_attributes(dataset: ImageDataset, chosen: tuple[str, ...] | None) -> ImageDataset:
    """``dataset`` (with named attributes) with only the ``chosen`` label columns, in that order; None keeps all."""
    if chosen is None:
        return dataset
    if dataset.attributes is None or dataset.train_labels is None or dataset.test_labels is None:
        raise GenzooError(f"{dataset.name} has no named attributes to choose from")
    columns = torch.tensor(attribute_columns(chosen, dataset.attributes, dataset.name))
    return dataclasses.replace(
        dataset,
        train_labels=dataset.train_labels[:, columns],
        test_labels=dataset.test_labels[:, columns],
        attributes=tuple(chosen),
        source=f"{dataset.source}; attributes {', '.join(chosen)}",
    )


def parse_attribute_values(spec: str, known: tuple[str, ...], where: str) -> dict[int, int]:
    """``"Blond_Hair,-Male"`` -> {position: 1, position: 0} among the ``known`` attributes: each name present,
    each name after a ``-`` absent (``where`` names the data in errors)."""
    chosen: dict[int, int] = {}
    for part in (part.strip() for part in spec.split(",") if part.strip()):
        name, value = (part[1:], 0) if part.startswith("-") else (part, 1)
        if name not in known:
            raise unknown_attribute(name, known, where)
        position = known.index(name)
        if position in chosen:
            raise GenzooError(f"{spec!r} names {name} twice")
        chosen[position] = value
    if not chosen:
        raise GenzooError(f"no attribute given (e.g. {known[0]} or -{known[0]}; the attributes: {', '.join(known)})")
    return chosen
