"""GAN-INT-CLS: the matching-aware discriminator sees the three pairs, the joint embedding loss, interpolation,
a real optimisation step of all three optimizers, and ``genzoo sample RUN --text`` end to end."""

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.config import stored_settings
from genzoo.errors import GenzooError
from genzoo.models.adversarial.text2image import Text2ImageConfig, one_factor_mismatch
from genzoo.models.adversarial.text_encoder import drop_words, joint_embedding_loss, shuffle_words
from genzoo.models.base import DirectStep

TINY = {"width": 8, "latent_dim": 8, "text_dim": 8, "compressed_dim": 4, "word_dim": 8}
runner = CliRunner()


def attribute_batch(n=8):
    labels = torch.stack(
        [torch.arange(n) % 10, *(torch.arange(n) // k % s for k, s in ((1, 2), (2, 2), (1, 4), (4, 2)))], 1
    )
    return {"x": torch.rand(n, 3, 28, 28) * 2 - 1, "y": labels}


class RecordingDiscriminator(torch.nn.Module):
    """Returns a fixed logit per kind of pair and records which (images, text) pairs it was shown."""

    def __init__(self, real, fake, right, wrong):
        super().__init__()
        self.known = {"real": real, "fake": fake, "right": right, "wrong": wrong}
        self.logits = {("real", "right"): 2.0, ("real", "wrong"): -1.0, ("fake", "right"): 0.5}
        self.seen = []

    def kind(self, tensor, names):
        return next(name for name in names if torch.equal(tensor, self.known[name]))

    def image_features(self, images):
        return images

    def score(self, features, text):
        pair = (self.kind(features, ("real", "fake")), self.kind(text, ("right", "wrong")))
        self.seen.append(pair)
        return torch.full((len(features),), self.logits[pair])

    def forward(self, images, text):
        return self.score(self.image_features(images), text)


def test_matching_aware_discriminator_sees_the_three_pairs():
    model = genzoo.create("text2image", (3, 28, 28), matching_weight=0.0, **TINY)  # the paper's objective alone
    real, fake = torch.zeros(4, 3, 28, 28), torch.ones(4, 3, 28, 28)
    right, wrong = torch.zeros(4, 8), torch.ones(4, 8)
    model.discriminator = RecordingDiscriminator(real, fake, right, wrong)
    labels = torch.arange(4)[:, None]
    loss = model.discriminator_losses(real, fake, right, wrong, labels, labels)["loss"]
    assert sorted(model.discriminator.seen) == [("fake", "right"), ("real", "right"), ("real", "wrong")]
    # Reed et al.: -log D(x, h) - [log(1 - D(x, h_wrong)) + log(1 - D(G(z, h), h))] / 2
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = -math.log(sigmoid(2.0)) - (math.log(1 - sigmoid(-1.0)) + math.log(1 - sigmoid(0.5))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_joint_embedding_loss_prefers_matching_pairs_and_counts_equal_labels_as_positives():
    labels = torch.tensor([[0], [1], [2]])
    aligned = F.normalize(torch.eye(3), dim=1)
    shuffled = aligned[[1, 2, 0]]
    assert joint_embedding_loss(aligned, aligned, labels, 0.1) < joint_embedding_loss(aligned, shuffled, labels, 0.1)
    # two items with one label are interchangeable: swapping their texts changes nothing
    twins = torch.tensor([[0], [0], [2]])
    swapped = aligned[[1, 0, 2]]
    assert torch.allclose(
        joint_embedding_loss(aligned, aligned, twins, 0.1), joint_embedding_loss(aligned, swapped, twins, 0.1)
    )


def test_pair_scores_are_the_projection_term_of_every_image_with_every_text():
    model = genzoo.create("text2image", (3, 28, 28), **TINY).eval()
    d = model.discriminator
    images, texts = torch.rand(3, 3, 28, 28) * 2 - 1, F.normalize(torch.randn(4, 8), dim=1)
    features = d.image_features(images)
    scores = d.pair_scores(features, texts)  # [3 images, 4 texts]
    projection, d.projection = d.projection, None
    for i in range(3):
        for j in range(4):
            joint_only = d.score(features[i : i + 1], texts[j : j + 1])
            d.projection = projection
            full = d.score(features[i : i + 1], texts[j : j + 1])
            d.projection = None
            assert float(full - joint_only) == pytest.approx(float(scores[i, j]), rel=1e-4, abs=1e-5)


def test_matching_term_enters_the_d_and_g_losses_only_when_weighted():
    model = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=0, **TINY)  # on by default
    model.configure_optimizers()
    logs = model.training_step(attribute_batch(), DirectStep(model))
    assert {"d_matching_loss", "g_matching_loss"} <= set(logs)
    # the loss is the batch softmax's: log(8 captions) for scores that do not tell the captions apart
    assert float(logs["d_matching_loss"]) == pytest.approx(math.log(8), rel=0.3)
    without = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=0, matching_weight=0.0, **TINY)
    without.configure_optimizers()
    logs = without.training_step(attribute_batch(), DirectStep(without))
    assert not {"d_matching_loss", "g_matching_loss"} & set(logs)


def test_the_text_encoder_is_pretrained_first_then_frozen_while_the_gan_trains():
    model = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=1, **TINY)
    networks = (model.text_encoder, model.discriminator, model.generator)

    def changed():
        now = [[p.detach().clone() for p in n.parameters()] for n in networks]
        moved = [any(not torch.equal(a, b) for a, b in zip(old, new)) for old, new in zip(state, now)]
        state[:] = now
        return moved

    state = [[p.detach().clone() for p in n.parameters()] for n in networks]
    step = DirectStep(model)
    logs = model.training_step(attribute_batch(), step)
    assert step.calls == ["text"] and changed() == [True, False, False]
    step.batch_index, step.calls = 1, []
    logs = model.training_step(attribute_batch(), step)
    assert step.calls == ["discriminator", "generator"] and changed() == [False, True, True]
    assert all(torch.isfinite(v) for v in logs.values())


def test_word_order_noise_permutes_each_caption_and_keeps_padding_last():
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [14, 0, 0, 0, 0, 0]])
    shuffled = shuffle_words(tokens, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled.sort(1).values, tokens.sort(1).values)  # the same words in every row
    assert torch.equal(shuffled > 0, tokens > 0)  # padding stays at the end
    orders = {tuple(shuffle_words(tokens, torch.Generator().manual_seed(s))[0].tolist()) for s in range(20)}
    assert len(orders) > 10  # the order really changes


def test_word_dropout_removes_words_at_its_rate_keeps_the_order_and_never_empties_a_caption():
    tokens = torch.arange(1, 21).repeat(500, 1)
    tokens[:, 15:] = 0  # 15 words, then padding
    dropped = drop_words(tokens, 0.2, torch.Generator().manual_seed(0))
    kept = dropped > 0
    assert abs(1 - kept.sum().item() / (tokens > 0).sum().item() - 0.2) < 0.01
    assert torch.equal(kept, kept.cummin(1).values)  # the kept words first, then padding
    for row in dropped[:50]:
        words = row[row > 0]
        assert torch.all(words[1:] > words[:-1])  # in their original order
    one_word = torch.tensor([[7, 0, 0]] * 200)
    assert torch.equal(drop_words(one_word, 0.9, torch.Generator().manual_seed(0)), one_word)
    assert torch.equal(drop_words(tokens, 0.0, torch.Generator().manual_seed(0)), tokens)


def test_pretraining_pulls_two_phrasings_together_only_for_attribute_captions():
    model = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=1, **TINY)
    logs = model.training_step(attribute_batch(), DirectStep(model))
    assert set(logs) == {"joint_embedding_loss", "phrasing_loss"} and torch.isfinite(logs["phrasing_loss"])
    model = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=1, phrasing_term=False, **TINY)
    assert set(model.training_step(attribute_batch(), DirectStep(model))) == {"joint_embedding_loss"}


@pytest.mark.parametrize("ema_decay, decay", [(0.05, 0.05), (0.999, 0.1)])  # warm-up: (1 + 0) / (10 + 0) at first
def test_samples_come_from_the_exponential_average_of_the_generator(ema_decay, decay):
    model = genzoo.create("text2image", (3, 28, 28), text_pretrain_batches=0, ema_decay=ema_decay, **TINY)
    before = [p.detach().clone() for p in model.generator.parameters()]
    model.training_step(attribute_batch(), DirectStep(model))
    for old, new, average in zip(before, model.generator.parameters(), model.generator_average.parameters()):
        assert torch.allclose(average, decay * old + (1 - decay) * new, atol=1e-6)
    pairs = zip(model.generator.parameters(), model.generator_average.parameters())
    assert any(not torch.equal(a, b) for a, b in pairs)
    model.eval()
    torch.manual_seed(3)
    drawn = model.sample(4, text="a thin red one")
    torch.manual_seed(3)
    noise = model.latent(4)
    assert torch.allclose(drawn, model.generator_average(noise, model.embed(["a thin red one"]).expand(4, -1)))
    plain = genzoo.create("text2image", (3, 28, 28), ema_decay=0, **TINY)
    assert plain.generator_average is None and plain.sampling_generator is plain.generator


def test_one_factor_mismatch_changes_exactly_one_caption_factor():
    labels = attribute_batch(400)["y"]
    wrong = one_factor_mismatch(labels, torch.Generator().manual_seed(0))
    assert ((wrong != labels).sum(1) == 1).all()
    assert (wrong >= 0).all() and (wrong.max(0).values < torch.tensor([10, 2, 2, 4, 2])).all()
    assert set((wrong != labels).float().argmax(1).tolist()) == {0, 1, 2, 3, 4}  # every factor gets changed


def test_the_caption_reaches_the_untrained_generator_on_the_scale_of_the_noise():
    # unit-norm phi(t) through a N(0, 0.02) compression would move G's output ~1% as much as z does (measured), and a
    # text that G starts out ignoring is never learned; the condition is rescaled and compressed at default scale
    model = genzoo.create("text2image", (3, 28, 28)).eval()
    text = model.condition(F.normalize(torch.randn(64, model.config.text_dim), dim=1))
    noise = model.latent(64)
    with torch.no_grad():
        base = model.generator(noise, text)
        other_text = (model.generator(noise, text.roll(1, 0)) - base).abs().mean()
        other_noise = (model.generator(noise.roll(1, 0), text) - base).abs().mean()
    assert other_text > 0.15 * other_noise


def test_the_generator_draws_the_image_with_a_full_resolution_convolution_unless_refinement_is_0():
    refined = genzoo.create("text2image", (3, 28, 28), **TINY).generator.network  # refinement 32 by default
    up, last = refined[-5], refined[-2]
    assert isinstance(up, torch.nn.ConvTranspose2d) and up.out_channels == 32
    assert isinstance(last, torch.nn.Conv2d) and last.kernel_size == (3, 3) and last.stride == (1, 1)
    assert (last.in_channels, last.out_channels) == (32, 3)
    plain = genzoo.create("text2image", (3, 28, 28), refinement=0, **TINY).generator.network
    assert isinstance(plain[-2], torch.nn.ConvTranspose2d) and plain[-2].out_channels == 3  # DCGAN's last layer
    with torch.no_grad():
        images = genzoo.create("text2image", (3, 28, 28), **TINY).eval().generate(["a thin red four"] * 2)
    assert images.shape == (2, 3, 28, 28) and images.abs().max() <= 1
    # a run stored before the setting existed was trained without it and loads that way
    assert stored_settings(Text2ImageConfig, {})["refinement"] == 0


def test_interpolation_walks_from_one_sentence_to_the_other():
    model = genzoo.create("text2image", (3, 28, 28), **TINY).eval()
    torch.manual_seed(1)
    path = model.sample(5, interpolate="a thin red one | a thick blue seven")
    torch.manual_seed(1)
    ends = model.sampling_generator(
        model.latent(1).expand(2, -1), model.embed(["a thin red one", "a thick blue seven"])
    )
    assert torch.allclose(path[0], ends[0], atol=1e-5) and torch.allclose(path[-1], ends[1], atol=1e-5)


def test_cli_trains_and_samples_from_a_sentence(tmp_path):
    run = tmp_path / "run"
    settings = [
        arg
        for key, value in {**TINY, "eval_images": 64, "text_pretrain_batches": 1}.items()
        for arg in ("--set", f"{key}={value}")
    ]
    result = runner.invoke(
        app,
        ["train", "text2image", "--data", "mnist-attributes", "--max-steps", "2", "--batch-size", "8",
         "--out", str(run), *settings],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"held_out_attributes_match", "train_phrasing_attributes_match", "held_out_caption_match"} <= set(metrics)
    assert metrics["classifier_accuracy_on_real"] > 0.8 and metrics["attribute_reader_accuracy_on_real"] > 0.95
    assert (run / "samples.png").is_file()
    from PIL import Image

    # 4 walks of 8 images: 28-pixel cells with 2-pixel borders, drawn at 2x
    assert Image.open(run / "interpolations.png").size == ((8 * 30 + 2) * 2, (4 * 30 + 2) * 2)
    assert {"held_out_partial_caption_match_1_to_3_parts", "unnamed_colour_top_share"} <= set(metrics)
    out = tmp_path / "three.png"
    result = runner.invoke(app, ["sample", str(run), "--n", "4", "--text", "a thin blue three", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    # words outside the vocabulary: one line naming them and the nearest known words, unless --allow-unknown
    out.unlink()
    result = runner.invoke(app, ["sample", str(run), "--text", "a purple sevn", "--out", str(out)])
    assert isinstance(result.exception, GenzooError) and not out.exists()
    line = str(result.exception)
    assert "\n" not in line and "'purple'" in line and "'sevn': seven" in line and "--allow-unknown" in line
    result = runner.invoke(app, ["sample", str(run), "--text", "a purple sevn", "--allow-unknown", "--out", str(out)])
    assert result.exit_code == 0 and out.is_file(), result.output
    result = runner.invoke(app, ["sample", str(run), "--vocabulary"])
    assert result.exit_code == 0 and "colour: white, pale, snow white | red" in result.output


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"word_dropout": 1.0}, "word_dropout must be in [0, 1)"),
        ({"matching_weight": -1.0}, "matching_weight must be at least 0"),
        ({"refinement": -1}, "refinement must be at least 0"),
        ({"text_pretrain_batches": -1}, "text_pretrain_batches must be at least 0, got -1"),
        ({"matching_weight": 1.0, "text_projection": False}, "set text_projection=true"),
    ],
)
def test_invalid_settings_are_one_readable_error(settings, message):
    with pytest.raises(GenzooError, match=re.escape(message)):
        genzoo.create("text2image", (3, 28, 28), **settings)


def test_condition_word_dropout_thins_the_right_and_the_mismatched_captions_alike():
    """Both captions D compares lose words, so a caption's length cannot tell D which one is mismatched."""

    def words_seen(dropout):
        model = genzoo.create(
            "text2image", (3, 28, 28), text_pretrain_batches=0, condition_word_dropout=dropout, **TINY
        )
        seen = []
        model.text_encoder.register_forward_pre_hook(lambda module, args: seen.append(int((args[0] > 0).sum())))
        model.training_step(attribute_batch(32), DirectStep(model))
        return seen

    clean, dropped = words_seen(0.0), words_seen(0.5)
    assert len(clean) == len(dropped) == 2  # the right captions, then the mismatched ones
    for full, thinned in zip(clean, dropped):
        assert 0.35 < thinned / full < 0.65
