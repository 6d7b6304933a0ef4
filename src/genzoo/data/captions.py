"""Sentences describing attribute-view images ("a thick red seven leaning left"), and a user's captioned images.

A caption is generated from a label row [class, thickness, slant, colour, background] (see
:mod:`genzoo.data.domains`) by drawing a template and one synonym per slot with a seeded generator, so a model can
caption its batches on the fly and the engine's batches stay ``{"x", "y"}``. Templates come in two disjoint sets:
``TRAIN_TEMPLATES`` for training and ``HELD_OUT_TEMPLATES`` (different word orders and sentence frames) for testing
whether the text encoder generalizes to phrasings it never saw; both use the same word list, so the vocabulary is
closed and fixed by this module (a trained model can always re-encode text).

Those templates name all five parts. People name some: "a red seven", "7". :func:`name_parts` marks a random
subset of each row's attributes ``UNNAMED`` (the class is always named), and :func:`partial_caption` writes a row
naming only its named parts, composed from a frame, the attributes' phrases (before or after the class word, in a
random order) and synonyms. Its frames again come in two disjoint sets: training frames and held-out ones whose
sentence shapes ("the seven is red", "leaning left , a seven", "seven : thin , red") no training caption has.

A user's own data: a folder of images with a ``captions.txt`` of ``filename<TAB>caption`` lines, read by
:func:`read_captioned_folder`; ``folder:PATH`` then labels each image with its caption as a row of UTF-8 byte
codes (:func:`caption_codes`), which the engine batches like any labels and text2image decodes.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import torch
from torch import Tensor

from genzoo.data.images import IMAGE_SUFFIXES
from genzoo.errors import GenzooError

CLASS_WORDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "mnist": (
        ("zero", "0", "digit zero"),
        ("one", "1", "digit one"),
        ("two", "2", "digit two"),
        ("three", "3", "digit three"),
        ("four", "4", "digit four"),
        ("five", "5", "digit five"),
        ("six", "6", "digit six"),
        ("seven", "7", "digit seven"),
        ("eight", "8", "digit eight"),
        ("nine", "9", "digit nine"),
    ),
    "fashion-mnist": (
        ("t-shirt", "top", "tee"),
        ("trousers", "pants", "pair of trousers"),
        ("pullover", "jumper", "sweater"),
        ("dress", "frock", "gown"),
        ("coat", "jacket", "overcoat"),
        ("sandal", "sandals", "open shoe"),
        ("shirt", "blouse", "button shirt"),
        ("sneaker", "trainer", "running shoe"),
        ("bag", "handbag", "purse"),
        ("ankle boot", "boot", "short boot"),
    ),
}
# per attribute group (order of domains.ATTRIBUTE_GROUPS), per value: synonyms
ATTRIBUTE_WORDS: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("thin", "slim", "fine", "narrow"), ("thick", "bold", "heavy", "fat")),
    (("leaning left", "slanted left", "tilted to the left"), ("leaning right", "slanted right", "tilted to the right")),
    (
        ("white", "pale", "snow white"),
        ("red", "crimson", "scarlet"),
        ("green", "emerald", "lime"),
        ("blue", "navy", "azure"),
    ),
    (("on black", "on a dark background", "on dark"), ("inverted", "on a light background", "in negative")),
)
TRAIN_TEMPLATES = (
    "a {thickness} {colour} {class} {slant} {background}",
    "{class} drawn in {colour} , {thickness} and {slant} , {background}",
    "a {colour} {class} , {thickness} , {slant} {background}",
    "{thickness} strokes : a {colour} {class} {slant} {background}",
    "this is a {thickness} {class} in {colour} {slant} {background}",
)
HELD_OUT_TEMPLATES = (
    "{background} , a {class} {slant} drawn {thickness} in {colour}",
    "the {class} is {colour} and {thickness} , {slant} , {background}",
    "{slant} , a {thickness} {colour} {class} {background}",
)
SLOTS = ("thickness", "slant", "colour", "background")
UNNAMED = -1  # a label row's value for a part its caption leaves open
# where an attribute of a partial caption goes: before the class word (thickness and colour may, as adjectives) and
# after it (every attribute, as a phrase); the held-out frames also use the plain value as a predicate
BEFORE_CLASS = {"thickness": "{}", "colour": "{}"}
AFTER_CLASS = {"thickness": "in {} strokes", "slant": "{}", "colour": "in {}", "background": "{}"}
# training frames: {before} the adjectives, {after} the phrases, {listed} the phrases separated by commas
TRAIN_FRAMES = (
    "a {before} {class} {after}",
    "{before} {class} {after}",
    "this is a {before} {class} {after}",
    "a {before} {class} , {listed}",
)
# held-out frames: {predicates} the plain values joined by commas and "and"; all but the first need an attribute
HELD_OUT_FRAMES = ("the {class} is {predicates}", "{listed} , a {class}", "{class} : {listed_values}")
CAPTION_STYLES = ("full", "partial")
PAD, UNKNOWN = "<pad>", "<unk>"
CAPTIONS_FILE = "captions.txt"
CAPTION_BYTES = 256  # longest caption (UTF-8 bytes) a captioned folder may hold


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters and digits of any script) and punctuation marks ``, : .``; hyphenated words stay
    whole: ``t-shirt``."""
    return re.findall(r"[^\W_]+(?:-[^\W_]+)*|[,:.]", text.lower())


def vocabulary(classes: str, style: str = "full") -> list[str]:
    """The closed, sorted word list of every template, frame and synonym for ``classes`` (pad first, unknown
    second); ``style`` "partial" adds the words of :func:`partial_caption`'s frames ("full": the word list of
    models trained on the templates alone, whose token ids it fixes)."""
    if classes not in CLASS_WORDS:
        raise GenzooError(f"no caption words for {classes!r}; known: {', '.join(CLASS_WORDS)}")
    phrases = [w for synonyms in CLASS_WORDS[classes] for w in synonyms]
    phrases += [w for group in ATTRIBUTE_WORDS for synonyms in group for w in synonyms]
    return [PAD, UNKNOWN, *sorted(frame_words(style) | {token for phrase in phrases for token in tokenize(phrase)})]


def frame_words(style: str = "full") -> set[str]:
    """The words of the templates (and with ``style`` "partial" of the frames and phrases), outside the slots."""
    phrases = [*TRAIN_TEMPLATES, *HELD_OUT_TEMPLATES]
    if style == "partial":
        phrases += [*TRAIN_FRAMES, *HELD_OUT_FRAMES, *BEFORE_CLASS.values(), *AFTER_CLASS.values(), "an and"]
    return {token for phrase in phrases for token in tokenize(re.sub(r"\{\w+\}", " ", phrase))}


def caption(labels: Tensor, classes: str, generator: torch.Generator, held_out: bool = False) -> list[str]:
    """One sentence per label row [N, 1 + groups]; templates and synonyms drawn from ``generator``."""
    templates = HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES
    class_words = CLASS_WORDS[classes]
    # one uniform draw per choice (template, class word, a synonym per slot), all at once: captions are written
    # for every training batch, and 6 scalar draws per caption cost more than the rest of the writing
    draws = torch.rand(len(labels), 2 + len(SLOTS), generator=generator).tolist()
    sentences = []
    for row, (u_template, u_class, *u_slots) in zip(labels.tolist(), draws):
        words = {"class": _pick(class_words[row[0]], u_class)}
        for slot, group, value, u in zip(SLOTS, ATTRIBUTE_WORDS, row[1:], u_slots):
            words[slot] = _pick(group[value], u)
        sentences.append(_pick(templates, u_template).format(**words))
    return sentences


def name_parts(labels: Tensor, generator: torch.Generator) -> Tensor:
    """Label rows [N, 1 + groups] with a random subset of each row's attributes set to ``UNNAMED``: the number named
    is uniform over 0..groups, then which ones uniform among subsets of that size; the class stays named."""
    draws = torch.rand(len(labels), 1 + len(SLOTS), generator=generator)
    count = (draws[:, :1] * (1 + len(SLOTS))).long()  # [N, 1]
    rank = draws[:, 1:].argsort(1).argsort(1)  # a uniform random order of the groups, [N, groups]
    named = labels.clone()
    named[:, 1:][rank >= count] = UNNAMED
    return named


def partial_caption(labels: Tensor, classes: str, generator: torch.Generator, held_out: bool = False) -> list[str]:
    """One sentence per label row [N, 1 + groups] naming the class and the attributes that are not ``UNNAMED``,
    in a training frame (or a held-out one); the phrases' order, places and synonyms drawn from ``generator``."""
    class_words = CLASS_WORDS[classes]
    groups = len(SLOTS)
    # one uniform draw per choice, all at once (as in :func:`caption`): frame, class word, a synonym per group, a
    # place (before or after the class word) per group, and an order key per group
    draws = torch.rand(len(labels), 2 + 3 * groups, generator=generator).tolist()
    sentences = []
    for row, (u_frame, u_class, *u) in zip(labels.tolist(), draws):
        synonyms, places, keys = u[:groups], u[groups : 2 * groups], u[2 * groups :]
        named = sorted(  # (order key, group, synonym, before the class word), in a random order
            (key, slot, _pick(group[value], synonym), not held_out and slot in BEFORE_CLASS and place < 0.5)
            for slot, group, value, synonym, place, key in zip(SLOTS, ATTRIBUTE_WORDS, row[1:], synonyms, places, keys)
            if value != UNNAMED
        )
        before = [BEFORE_CLASS[slot].format(word) for _, slot, word, first in named if first]
        after = [AFTER_CLASS[slot].format(word) for _, slot, word, first in named if not first]
        values = [word for _, _, word, _ in named]
        if held_out:
            frames = HELD_OUT_FRAMES if named else HELD_OUT_FRAMES[:1]
        elif len(named) == groups:  # naming every part: the templates too
            frames = (*TRAIN_FRAMES, *TRAIN_TEMPLATES) if after else (*TRAIN_FRAMES[:-1], *TRAIN_TEMPLATES)
        else:
            frames = TRAIN_FRAMES if after else TRAIN_FRAMES[:-1]
        sentence = _pick(frames, u_frame).format(
            **{slot: word for _, slot, word, _ in named},
            before=" ".join(before),
            after=" ".join(after),
            listed=" , ".join(after),
            listed_values=" , ".join(values),
            predicates=" and ".join([" , ".join(values[:-1]), values[-1]]) if len(values) > 1 else "".join(values),
            **{"class": _pick(class_words[row[0]], u_class)},
        )
        sentences.append(_articles(" ".join(sentence.split())))
    return sentences


def _articles(sentence: str) -> str:
    """``a`` before a vowel becomes ``an``; a frame with nothing to predicate ("the seven is") ends at the class."""
    words = sentence.split(" ")
    words = [("an" if w == "a" and nxt[0] in "aeiou" else w) for w, nxt in zip(words, [*words[1:], "."])]
    return " ".join(words).removesuffix(" is")


def _pick(options: tuple[str, ...], uniform: float) -> str:
    """The option a uniform draw in [0, 1) falls on."""
    return options[int(uniform * len(options))]


def encode(sentences: list[str], words: list[str], hashed_buckets: int = 0) -> Tensor:
    """Sentences -> token ids [N, T] padded with 0 (T = the longest sentence).

    A word outside ``words`` maps to 1 (unknown), or, with ``hashed_buckets`` > 0, to one of that many ids after
    ``words`` chosen by a fixed hash of the word (feature hashing): an open vocabulary for users' captions that
    needs no stored word list, while the closed words keep their own collision-free ids.
    """
    index = {w: i for i, w in enumerate(words)}

    def token_id(token: str) -> int:
        if token in index:
            return index[token]
        if hashed_buckets:
            return len(words) + zlib.crc32(token.encode("utf-8")) % hashed_buckets
        return 1

    tokens = [[token_id(t) for t in tokenize(s)] or [1] for s in sentences]
    length = max(len(t) for t in tokens)
    return torch.tensor([ids + [0] * (length - len(ids)) for ids in tokens], dtype=torch.long)


def caption_codes(sentences: list[str]) -> Tensor:
    """Sentences -> label rows of UTF-8 byte codes [N, CAPTION_BYTES] (long, zero-padded).

    This is how a user's captions travel through the engine: as the ``y`` of a batch, like any label tensor, so
    batching, shuffling and exact resume need nothing new. The fixed width tells them apart from attribute rows.
    """
    rows = torch.zeros(len(sentences), CAPTION_BYTES, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        data = sentence.encode("utf-8")
        if len(data) > CAPTION_BYTES:
            raise GenzooError(f"caption {sentence[:40]!r}... is longer than {CAPTION_BYTES} bytes")
        rows[row, : len(data)] = torch.tensor(list(data), dtype=torch.long)
    return rows


def is_caption_codes(labels: Tensor | None) -> bool:
    """True for label rows made by :func:`caption_codes` (a user's captions), [N, CAPTION_BYTES]."""
    return labels is not None and labels.dim() == 2 and labels.shape[1] == CAPTION_BYTES


def decode_captions(codes: Tensor) -> list[str]:
    """Label rows of :func:`caption_codes` back to sentences."""
    return [bytes(v for v in row if v).decode("utf-8", errors="replace") for row in codes.tolist()]


def read_captioned_folder(path: str | Path) -> tuple[list[Path], list[str]]:
    """A user's folder: image paths (sorted) and their captions from ``captions.txt`` (``filename<TAB>caption``
    lines, file names relative to the folder). Every image file in the folder must have exactly one caption;
    every listed file must exist. Errors name the file and line."""
    root = Path(path).expanduser()
    listing = root / CAPTIONS_FILE
    if not listing.is_file():
        raise GenzooError(f"{root} has no {CAPTIONS_FILE} (lines: filename<TAB>caption)")
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise GenzooError(f"cannot read {listing} as UTF-8 text: {err}") from None
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        name, tab, text = line.partition("\t")
        name = Path(name.strip()).as_posix()
        if not tab or not name or not text.strip():
            raise GenzooError(f"{listing}:{number}: expected filename<TAB>caption")
        if name in captions:
            raise GenzooError(f"{listing}:{number}: {name} is captioned twice")
        if not (root / name).resolve().is_relative_to(root.resolve()):
            raise GenzooError(f"{listing}:{number}: {name} is outside {root}")
        if not (root / name).is_file():
            raise GenzooError(f"{listing}:{number}: no image {name} in {root}")
        captions[name] = text.strip()
    if not captions:
        raise GenzooError(f"{listing} lists no images")
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for image in images:
        if image.relative_to(root).as_posix() not in captions:
            raise GenzooError(f"image {image} has no caption in {listing}")
    files = sorted(root / name for name in captions)
    return files, [captions[f.relative_to(root).as_posix()] for f in files]
