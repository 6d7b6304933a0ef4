"""Partial captions for text2image: the generator names every subset of the parts, held-out frames never occur in
training, scoring looks only at the parts a caption names, the spread of unnamed parts, the matching loss with
captions that leave parts open, and words outside the vocabulary."""

import itertools
import math
import re

import pytest
import torch

import genzoo
from genzoo.config import stored_settings
from genzoo.data import captions as cap
from genzoo.data import load_dataset
from genzoo.data.domains import ATTRIBUTE_GROUPS, read_attributes, render
from genzoo.errors import GenzooError
from genzoo.models.adversarial.text2image import Text2ImageConfig, one_factor_mismatch, partial_caption_report
from genzoo.models.adversarial.text_encoder import matching_loss

TINY = {"width": 8, "latent_dim": 8, "text_dim": 8, "compressed_dim": 4, "word_dim": 8}
SIZES = [10, *(len(values) for values in ATTRIBUTE_GROUPS.values())]


def random_rows(n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(size, (n,), generator=generator) for size in SIZES], 1)


PHRASES = {w: "{class}" for synonyms in cap.CLASS_WORDS["mnist"] for w in synonyms}
PHRASES |= {w: f"{{{slot}}}" for slot, group in zip(cap.SLOTS, cap.ATTRIBUTE_WORDS) for s in group for w in s}
PHRASE = re.compile(rf"(?<!\w)({'|'.join(map(re.escape, sorted(PHRASES, key=len, reverse=True)))})(?!\w)")


def skeleton(sentence):
    """The sentence with every class word and attribute phrase replaced by its part's name: its frame and order."""
    return PHRASE.sub(lambda match: PHRASES[match.group(1)], sentence)


def named_slots(sentence):
    return {slot for slot in ("class", *cap.SLOTS) if f"{{{slot}}}" in skeleton(sentence)}


def test_every_subset_of_the_attributes_is_named_and_the_class_always():
    rows = random_rows(4000)
    named = cap.name_parts(rows, torch.Generator().manual_seed(1))
    assert torch.equal(named[:, 0], rows[:, 0])
    kept = named[:, 1:] != cap.UNNAMED
    assert torch.equal(named[:, 1:][kept], rows[:, 1:][kept])  # a named part keeps its value
    subsets = {tuple(row) for row in kept.tolist()}
    assert subsets == set(itertools.product((False, True), repeat=4))
    counts = kept.sum(1).bincount(minlength=5)
    assert (counts > 650).all()  # 0..4 attributes named, uniformly (800 each)


def test_training_captions_name_exactly_the_named_parts_with_their_values():
    rows = cap.name_parts(random_rows(2000), torch.Generator().manual_seed(2))
    sentences = cap.partial_caption(rows, "mnist", torch.Generator().manual_seed(3))
    assert "a thin blue three" in set(cap.partial_caption(
        torch.tensor([[3, 0, cap.UNNAMED, 3, cap.UNNAMED]] * 5000), "mnist", torch.Generator().manual_seed(0)
    ))  # fmt: skip
    for row, sentence in zip(rows.tolist(), sentences):
        expected = {"class"} | {slot for slot, value in zip(cap.SLOTS, row[1:]) if value != cap.UNNAMED}
        assert named_slots(sentence) == expected, sentence
        assert any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", sentence) for w in cap.CLASS_WORDS["mnist"][row[0]])
        for slot, group, value in zip(cap.SLOTS, cap.ATTRIBUTE_WORDS, row[1:]):
            if value != cap.UNNAMED:
                assert any(w in sentence for w in group[value]), (slot, sentence)
    assert {"7", "seven", "a seven", "this is a digit seven"} <= set(sentences) | set(
        cap.partial_caption(torch.tensor([[7, -1, -1, -1, -1]] * 200), "mnist", torch.Generator().manual_seed(0))
    )


def test_held_out_frames_never_occur_in_training_and_use_only_trained_words():
    rows = cap.name_parts(random_rows(3000), torch.Generator().manual_seed(4))
    training = cap.partial_caption(rows, "mnist", torch.Generator().manual_seed(5))
    training += cap.partial_caption(rows, "mnist", torch.Generator().manual_seed(6))
    held_out = cap.partial_caption(rows, "mnist", torch.Generator().manual_seed(7), held_out=True)
    train_frames, held_out_frames = {skeleton(s) for s in training}, {skeleton(s) for s in held_out}
    assert not train_frames & held_out_frames
    # nor the held-out templates of the full captions, which the old held-out metrics keep using
    full_held_out = cap.caption(random_rows(300), "mnist", torch.Generator().manual_seed(8), held_out=True)
    assert not train_frames & {skeleton(s) for s in full_held_out}
    for frame in cap.HELD_OUT_FRAMES:  # every held-out frame is used
        start = frame.split("{")[0] or frame.split("}")[1].split("{")[0]
        assert any(start in s for s in held_out)
    # held-out captions name what their rows name, with words training taught
    for row, sentence in zip(rows.tolist()[:500], held_out):
        expected = {"class"} | {slot for slot, value in zip(cap.SLOTS, row[1:]) if value != cap.UNNAMED}
        assert named_slots(sentence) == expected, sentence
    trained = {w for s in training for w in cap.tokenize(s)}
    assert {w for s in held_out for w in cap.tokenize(s)} <= trained
    assert trained <= set(cap.vocabulary("mnist", "partial"))
    assert set(cap.vocabulary("mnist")) < set(cap.vocabulary("mnist", "partial"))


def test_partial_captions_are_scored_only_on_the_parts_they_name():
    digits = load_dataset("mnist")
    grey, classes = digits.test[:200], digits.test_labels[:200]
    attributes = random_rows(200, seed=9)[:, 1:]
    images = render(grey, attributes).float() / 255
    read = torch.cat([classes[:, None], read_attributes(images)], 1)  # a perfect class reader
    truth = torch.cat([classes[:, None], attributes], 1)
    named = cap.name_parts(truth, torch.Generator().manual_seed(10))
    report = partial_caption_report(read, named, "p_")
    assert report["p_caption_match"] > 0.95 and report["p_class_match"] == 1.0
    # the unnamed parts may be anything: the same captions score the same on images whose open parts differ
    other = read.clone()
    other[:, 1:] = torch.where(named[:, 1:] == cap.UNNAMED, (read[:, 1:] + 1) % torch.tensor(SIZES[1:]), read[:, 1:])
    assert partial_caption_report(other, named, "p_") == report
    # a named part changed in the caption fails it: a caption naming a wrong colour never matches
    wrong = named.clone()
    colour_named = wrong[:, 3] != cap.UNNAMED
    wrong[colour_named, 3] = (wrong[colour_named, 3] + 1) % 4
    scored = partial_caption_report(read, wrong, "p_")
    assert scored["p_colour_match"] == 0.0
    assert scored["p_caption_match"] == pytest.approx(
        report["p_caption_match"] - float(colour_named.float().mean()), abs=0.03
    )
    parts = (named != cap.UNNAMED).sum(1)
    expected_short = float(((read == named) | (named == cap.UNNAMED)).all(1)[parts <= 3].float().mean())
    assert report["p_caption_match_1_to_3_parts"] == pytest.approx(expected_short)
    # without a class reader the class is not scored
    blind = read.clone()
    blind[:, 0] = cap.UNNAMED
    assert "p_class_match" not in partial_caption_report(blind, named, "p_")


def test_unnamed_parts_spread_scores_a_generator_that_ignores_its_noise_as_1(monkeypatch):
    model = genzoo.create("text2image", (3, 28, 28), **TINY).eval()
    grey = load_dataset("mnist").test[:1]
    labels = random_rows(400, seed=11)
    named = cap.name_parts(labels, torch.Generator().manual_seed(12))

    def drawing(vary):
        def generate(sentences):
            index = torch.arange(len(sentences))
            values = torch.stack([index % 2, index // 2 % 2, index // 4 % 4, (index + index // 2) % 2], 1) * vary
            return render(grey.expand(len(sentences), -1, -1, -1), values).float() / 127.5 - 1

        return generate

    monkeypatch.setattr(model, "generate", drawing(0))
    collapsed = model.unnamed_spread(named, labels)
    assert all(collapsed[f"unnamed_{g}_top_share"] > 0.95 for g in ATTRIBUTE_GROUPS)
    monkeypatch.setattr(model, "generate", drawing(1))  # 16 noise draws of a caption cover every value evenly
    spread = model.unnamed_spread(named, labels)
    for group, even in zip(ATTRIBUTE_GROUPS, (0.5, 0.5, 0.25, 0.5)):
        assert spread[f"unnamed_{group}_top_share"] == pytest.approx(even, abs=0.1)
        assert spread[f"data_{group}_top_share"] == pytest.approx(even, abs=0.1)


def test_matching_loss_leaves_out_pairs_nobody_can_judge():
    images = torch.tensor([[7, 0, 1, 1, 0], [3, 1, 0, 2, 1]])
    captions = torch.tensor([[7, -1, -1, 1, -1], [3, -1, -1, -1, -1]])  # "a red seven", "a three"
    similarity = torch.tensor([[2.0, -1.0], [0.5, 1.5]])
    # full label rows: the old loss (equal rows positive), whether or not caption labels are passed
    assert torch.equal(matching_loss(similarity, images), matching_loss(similarity, images, images))
    loss = matching_loss(similarity, images, captions)
    expected = (
        -torch.log_softmax(similarity, 1).diagonal().mean() - torch.log_softmax(similarity.T, 1).diagonal().mean()
    ) / 2
    assert float(loss) == pytest.approx(float(expected))
    # an image drawn from "a seven": "a red seven" names a part it leaves open, so that pair is left out
    fakes = torch.tensor([[7, -1, -1, -1, -1], [7, -1, -1, 1, -1]])  # "a seven", "a red seven"
    texts = fakes
    left_out = matching_loss(torch.tensor([[1.0, 5.0], [0.0, 1.0]]), fakes, texts)
    also = matching_loss(torch.tensor([[1.0, -5.0], [0.0, 1.0]]), fakes, texts)
    assert float(left_out) == pytest.approx(float(also))
    # and the image from "a red seven" counts "a seven" as a positive: both texts are its targets
    row = torch.log_softmax(torch.tensor([0.0, 1.0]), 0)
    column_1 = torch.log_softmax(torch.tensor([1.0]), 0)  # "a seven": only image 0 (image 1 is positive too)
    assert math.isfinite(float(left_out)) and float(row.mean()) < 0 and float(column_1) == 0.0


def test_a_wrong_caption_changes_one_part_the_caption_names():
    named = cap.name_parts(random_rows(500, seed=13), torch.Generator().manual_seed(14))
    wrong = one_factor_mismatch(named, torch.Generator().manual_seed(15))
    changed = wrong != named
    assert (changed.sum(1) == 1).all()
    assert (named[changed] != cap.UNNAMED).all() and (wrong[named == cap.UNNAMED] == cap.UNNAMED).all()


def test_unknown_words_are_named_with_the_nearest_known_ones():
    model = genzoo.create("text2image", (3, 28, 28), **TINY).eval()
    with pytest.raises(GenzooError) as error:
        model.sample(2, text="a purpel sevn")
    message = str(error.value)
    assert "\n" not in message and "'purpel'" in message and "'sevn': seven" in message
    assert model.sample(2, text="a purpel sevn", allow_unknown=True).shape == (2, 3, 28, 28)
    assert model.understood("A thin blue three.") == "a thin blue three"  # case and unknown punctuation
    with pytest.raises(GenzooError, match="'zebra'"):
        model.sample(2, interpolate="a red seven | a zebra")
    assert "colour: white, pale, snow white | red" in model.describe_vocabulary()


def test_runs_stored_before_partial_captions_load_as_they_were_trained():
    before = stored_settings(Text2ImageConfig, {})
    assert Text2ImageConfig().captions == "full" and before["recorded_words"] == 0  # full: the default, as before
    old = genzoo.create("text2image", (3, 28, 28), **{**TINY, **before})
    assert old.words == cap.vocabulary("mnist") and not any("user_word" in k for k in old.state_dict())
    new = genzoo.create("text2image", (3, 28, 28), **{**TINY, **before, "captions": "partial", "recorded_words": 9})
    assert set(new.state_dict()) - set(old.state_dict()) == {"user_words", "user_word_count"}
    assert len(new.words) == len(old.words) + 1  # "an"
    with pytest.raises(GenzooError, match="captions must be one of full, partial"):
        genzoo.create("text2image", (3, 28, 28), captions="some")


def test_the_mode_seeking_term_pays_the_generator_for_images_that_follow_the_noise(monkeypatch):
    model = genzoo.create("text2image", (3, 28, 28), **TINY)
    latent, condition = torch.randn(4, 8), torch.randn(4, 8)
    draws = iter([torch.zeros(4, 8)])  # the second noise draw
    monkeypatch.setattr(model, "latent", lambda n: next(draws))
    follows = lambda z, h: z.mean(1)[:, None, None, None].expand(-1, 3, 28, 28)  # noqa: E731
    monkeypatch.setattr(model.generator, "forward", follows)
    expected = 1 / (float((follows(latent, condition)).abs().mean() / latent.abs().mean()) + 1e-5)
    assert float(model.mode_seeking(follows(latent, condition), latent, condition)) == pytest.approx(expected)
    draws = iter([torch.zeros(4, 8)])
    monkeypatch.setattr(model.generator, "forward", lambda z, h: torch.zeros(len(z), 3, 28, 28))  # ignores z
    assert float(model.mode_seeking(torch.zeros(4, 3, 28, 28), latent, condition)) == pytest.approx(1e5)
    assert Text2ImageConfig().mode_seeking_weight == 0.0  # opt-in with partial captions
