"""Puzzle-GAN: key patches agree with their masks, patch files load or fail by name, the losses, a real training
step, exact resume in the middle of the loss-weight schedule, and the CLI end to end with --patches."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import genzoo
from genzoo.cli import app
from genzoo.data.patches import extract_key_patches, key_patch_corners, load_patch_images, paste_patches
from genzoo.errors import GenzooError
from genzoo.models.adversarial.puzzlegan import PuzzleGAN, appearance_l1
from genzoo.models.base import DirectStep

runner = CliRunner()
TINY = {"width": 8, "part_features": 16, "latent_dim": 8, "eval_samples": 100}


def test_key_patches_are_the_image_windows_and_the_mask_is_their_union():
    images = torch.rand(6, 2, 20, 20) * 2 - 1
    found = extract_key_patches(images, count=3, patch_size=7, background=-1.0)
    assert found.patches.shape == (6, 3, 2, 7, 7) and found.mask.shape == (6, 1, 20, 20)
    for b in range(6):
        assert len({tuple(c.tolist()) for c in found.corners[b]}) == 3  # distinct windows
        for k in range(3):
            top, left = found.corners[b, k].tolist()
            torch.testing.assert_close(found.patches[b, k], images[b, :, top : top + 7, left : left + 7])
    # pasting the patches back reproduces the image exactly inside the mask and nothing outside it
    pasted = paste_patches(found.patches, found.corners, 20, 20, background=-5.0)
    torch.testing.assert_close(pasted * found.mask, images * found.mask)
    assert pasted[(found.mask == 0).expand_as(pasted)].eq(-5.0).all()
    area = found.mask.sum((1, 2, 3))
    assert (area >= 49).all() and (area <= 3 * 49).all()


def test_key_patch_locations_follow_the_content():
    image = torch.full((1, 1, 28, 28), -1.0)
    image[..., 18:24, 3:9] = 1.0  # one small blob on a blank background
    generator = torch.Generator().manual_seed(0)
    corners = torch.cat([key_patch_corners(image, 1, 8, -1.0, generator) for _ in range(300)])[:, 0]
    touches_blob = (corners[:, 0] + 8 > 18) & (corners[:, 0] < 24) & (corners[:, 1] + 8 > 3) & (corners[:, 1] < 9)
    # uniformly placed windows would touch it 90 times in 441 (20%)
    assert touches_blob.float().mean() > 0.95
    with pytest.raises(GenzooError, match="does not fit"):
        key_patch_corners(image, 1, 29, -1.0)


def test_patch_files_load_and_bad_files_fail_naming_the_file(tmp_path):
    good = tmp_path / "part.png"
    pixels = (np.arange(100).reshape(10, 10) * 2).astype(np.uint8)
    Image.fromarray(pixels).save(good)
    big = tmp_path / "big.png"
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(big)
    loaded = load_patch_images([str(good), str(big)], channels=1, patch_size=10)
    assert loaded.shape == (2, 1, 10, 10) and loaded.dtype == torch.uint8
    assert torch.equal(loaded[0, 0], torch.from_numpy(pixels))
    assert loaded[1].eq(200).all()  # RGB converted to grey and resized
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(GenzooError, match="corrupt.png"):
        load_patch_images([str(good), str(corrupt)], 1, 10)
    with pytest.raises(GenzooError, match="missing.png"):
        load_patch_images([str(tmp_path / "missing.png")], 1, 10)


def test_appearance_loss_is_the_mean_absolute_error_inside_the_mask():
    images, real = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :2] = 1
    images[0, :, 0, 0] = 0.8  # inside the mask: counts
    images[1] = 5.0  # outside the mask: ignored
    assert appearance_l1(images, real, mask).item() == pytest.approx(0.8 * 3 / (4 * 3))


def test_puzzlegan_does_a_real_step_and_the_generator_update_never_touches_d():
    model = genzoo.create("puzzlegan", (1, 28, 28), **TINY)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    networks = {"encoder": model.encoder, "mask": model.mask_network, "generator": model.generator}
    before = {
        name: [p.clone() for p in net.parameters()] for name, net in {**networks, "d": model.discriminator}.items()
    }
    step = DirectStep(model, batch_index=10)
    logs = model.training_step({"x": x}, step)
    assert step.calls == ["discriminator", "generator"]
    assert all(torch.isfinite(v) for v in logs.values())
    for name, net in {**networks, "d": model.discriminator}.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters())), name
    assert not model.example_patches.eq(-1).all()  # training patch sets are kept for sample()
    # the generator-side loss reaches E, M and G but leaves D's gradients empty
    truth = model.key_patches(x)
    puzzle = model.complete(truth.patches, model.latent(8))
    model.zero_grad(set_to_none=True)
    from genzoo.models.adversarial.base import frozen

    with frozen(model.discriminator):
        model.discriminate_pair(puzzle.images, puzzle.masks).mean().backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_adversarial_weight_warms_up_linearly():
    model = genzoo.create("puzzlegan", (1, 28, 28), adversarial_warmup_images=100, adversarial_weight=2.0, **TINY)
    assert [model.adversarial_weight_at(n) for n in (0, 50, 100, 1000)] == [0.0, 1.0, 2.0, 2.0]


def test_sample_layouts():
    model = genzoo.create("puzzlegan", (1, 28, 28), **TINY).eval()
    assert model.sample(5).shape == (5, 1, 28, 28)
    strips = model.sample(2, layout="puzzle")
    assert strips.shape == (2, 1, 28, 5 * 30 - 2)  # 3 patches, mask, image
    with pytest.raises(GenzooError, match="layout"):
        model.sample(2, layout="mosaic")


def train_tiny(out, max_steps, resume=False, checkpoint_every=100):
    return genzoo.train(
        "puzzlegan",
        "mnist",
        max_steps=max_steps,
        batch_size=8,
        out=out,
        resume=resume,
        settings={"adversarial_warmup_images": 48, **TINY},
        checkpoint_every=checkpoint_every,
        progress=False,
        samples=4,
    )


class Interrupted(Exception):
    pass


def test_resume_in_the_middle_of_the_loss_schedule_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    train_tiny(tmp_path / "straight", 4)
    train_step = PuzzleGAN.training_step

    def crash_at_batch_2(model, batch, step):  # batch 2: 16 of the 48 warm-up images, adversarial weight 1/3
        if step.batch_index == 2:
            raise Interrupted
        return train_step(model, batch, step)

    monkeypatch.setattr(PuzzleGAN, "training_step", crash_at_batch_2)
    with pytest.raises(Interrupted):
        train_tiny(tmp_path / "split", 4, checkpoint_every=2)
    monkeypatch.undo()
    assert train_tiny(tmp_path / "split", 4, resume=True).metrics["train_batches"] == 4
    expected = load_file(tmp_path / "straight" / "model.safetensors")
    actual = load_file(tmp_path / "split" / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_cli_trains_puzzlegan_and_completes_patch_files(tmp_path):
    out = tmp_path / "run"
    args = ["train", "puzzlegan", "--data", "mnist", "--max-steps", "2", "--batch-size", "8", "--out", str(out)]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["mask_iou"] <= 1 and 0 <= metrics["appearance_l1"] <= 1
    assert math.isfinite(metrics["frechet_distance"]) and metrics["completed_images"] == 100
    assert (out / "samples.png").is_file()
    puzzle = Image.open(out / "puzzle.png")
    assert puzzle.height == (16 * 30 + 2) * 2  # one strip per row: 16 rows of 28 pixels and borders, drawn at 2x

    paths = []
    for k in range(3):
        path = tmp_path / f"part{k}.png"
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (10, 10), dtype=np.uint8)).save(path)
        paths.append(str(path))
    grid = tmp_path / "grid.png"
    result = runner.invoke(app, ["sample", str(out), "--n", "4", "--out", str(grid), "--patches", ",".join(paths)])
    assert result.exit_code == 0, result.output
    assert Image.open(grid).width > Image.open(grid).height  # strips: patches -> mask -> image

    (tmp_path / "broken.png").write_bytes(b"not an image")
    bad = ",".join([*paths[:2], str(tmp_path / "broken.png")])
    result = runner.invoke(app, ["sample", str(out), "--out", str(grid), "--patches", bad])
    assert result.exit_code != 0 and "broken.png" in str(result.exception)
    with pytest.raises(GenzooError, match="takes 3 patch images"):
        genzoo.load(out).sample(2, patches=paths[0])
