"""Attribute views and captions: the measures recover what the renderer applied, domains never share a source,
captions say what the labels say, held-out phrasings are really held out."""

import pytest
import torch

from genzoo.data import captions as cap
from genzoo.data import domains as dom
from genzoo.data import load_dataset
from genzoo.errors import GenzooError


@pytest.fixture(scope="module")
def digits():
    base = load_dataset("mnist")
    return base.test[:400], base.test_labels[:400]


def test_measures_recover_every_applied_attribute(digits):
    images, _ = digits
    attributes = dom.random_attributes(len(images), torch.Generator().manual_seed(3))
    rendered = dom.render(images, attributes)
    accuracy = (dom.read_attributes(rendered) == attributes).float().mean(0)  # per group
    assert accuracy.min() >= 0.95, dict(zip(dom.GROUPS, accuracy.tolist()))
    # colour, slant and background are recovered exactly; thickness sits on a threshold, so a few thin digits
    # that were thick to begin with may read as thick
    assert accuracy[1:].min() >= 0.99


def test_shear_sets_the_moment_slant_exactly(digits):
    grey = digits[0][:50].float() / 255
    target = torch.linspace(-0.4, 0.4, 50)
    measured = dom.measure_slant(dom.shear_to_slant(grey, target).expand(-1, 3, -1, -1))
    assert torch.allclose(measured, target, atol=0.03)


def test_thickening_widens_and_thinning_narrows_every_stroke(digits):
    grey = digits[0][:100].float() / 255
    width = {name: dom.measure_thickness(op(grey).expand(-1, 3, -1, -1)) for name, op in
             (("thin", dom.thin), ("plain", lambda g: g), ("thick", dom.thicken))}  # fmt: skip
    assert (width["thick"] > width["plain"]).all() and (width["plain"] > width["thin"]).all()


def test_growing_undoes_thinning_on_strokes_two_pixels_wide():
    square = torch.zeros(1, 1, 12, 12)
    square[..., 3:9, 4:6] = 1.0  # a vertical stroke 2 pixels wide, 6 long
    assert torch.equal(dom.grow(dom.thin(square)), square)
    assert dom.thin(square).sum() == 5  # erosion left a 1-pixel line; growing brought back the width


def test_canonical_view_of_a_thin_rendering_has_the_source_digits_ink(digits):
    images, _ = digits
    grey = images[:200].float() / 255
    attributes = torch.zeros(200, 4, dtype=torch.long)  # thin, left slant, first colour, dark background
    canonical = dom.canonical_grey(dom.render(images[:200], attributes))
    # growing gives back the width the erosion took (the eroded digit alone has ~45% less ink than the source)
    assert (canonical.mean() / grey.mean() - 1).abs() < 0.2, (canonical.mean(), grey.mean())


def test_colour_and_background_are_read_through_inversion(digits):
    images = digits[0][:8].repeat(8, 1, 1, 1)
    attributes = torch.zeros(64, 4, dtype=torch.long)
    attributes[:, 2] = torch.arange(64) % 4
    attributes[:, 3] = torch.arange(64) // 32
    read = dom.read_attributes(dom.render(images, attributes))
    assert torch.equal(read[:, 2:], attributes[:, 2:])


def test_every_source_image_is_rendered_once_so_domains_are_disjoint():
    base, view = load_dataset("mnist"), load_dataset("mnist-attributes")
    assert len(view.train) == len(base.train) and len(view.test) == len(base.test)
    assert torch.equal(view.train_labels[:, 0], base.train_labels)  # row i is source i, rendered once
    thin = view.train_labels[:, 1] == 0
    assert 0 < int(thin.sum()) < len(thin)  # both domains present, complementary rows: no source in both
    # each view row is the rendering of its own source image and nothing else
    assert torch.equal(dom.render(base.train[:16], view.train_labels[:16, 1:]), view.train[:16])


def test_attribute_specs_parse_and_reject_bad_ones():
    assert dom.parse_attributes("thick, red") == {0: 1, 2: 1}
    with pytest.raises(GenzooError, match="twice"):
        dom.parse_attributes("thick,thin")
    with pytest.raises(GenzooError, match="unknown attribute"):
        dom.parse_attributes("purple")


def test_captions_name_the_class_and_every_attribute():
    labels = torch.tensor([[3, 0, 0, 3, 0], [7, 1, 1, 1, 1]])
    generator = torch.Generator().manual_seed(0)
    for held_out in (False, True):
        for _ in range(10):
            for row, sentence in zip(labels.tolist(), cap.caption(labels, "mnist", generator, held_out)):
                assert any(w in sentence for w in cap.CLASS_WORDS["mnist"][row[0]])
                for group, value in enumerate(row[1:]):
                    assert any(w in sentence for w in cap.ATTRIBUTE_WORDS[group][value])


def test_held_out_phrasings_are_disjoint_and_use_known_words():
    assert not set(cap.TRAIN_TEMPLATES) & set(cap.HELD_OUT_TEMPLATES)
    words = cap.vocabulary("mnist")
    labels = torch.tensor([[d, d % 2, (d // 2) % 2, d % 4, (d // 3) % 2] for d in range(10)])
    sentences = cap.caption(labels, "mnist", torch.Generator().manual_seed(1), held_out=True)
    tokens = cap.encode(sentences, words)
    assert (tokens != words.index(cap.UNKNOWN)).all()
    assert cap.encode(["a purple three"], words)[0, 1] == words.index(cap.UNKNOWN)


def test_a_users_captioned_folder_is_read_and_checked(tmp_path):
    from PIL import Image

    Image.new("RGB", (28, 28)).save(tmp_path / "a.png")
    (tmp_path / "captions.txt").write_text("a.png\ta thin blue three\n\n")
    files, sentences = cap.read_captioned_folder(tmp_path)
    assert files == [tmp_path / "a.png"] and sentences == ["a thin blue three"]
    (tmp_path / "captions.txt").write_text("missing.png\ta red one\n")
    with pytest.raises(GenzooError, match="no image missing.png"):
        cap.read_captioned_folder(tmp_path)
