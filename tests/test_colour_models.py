"""The models of the papers that ran on colour photographs take made 64x64 RGB data at their sizes, and the sample
metrics work for those sets (feature nets for cifar10 / celeba, the standard FID with a user's TorchScript file)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.data.transforms import prepare, prepare_test
from genzoo.metrics.features import load_feature_net, save_feature_net, train_feature_net
from genzoo.metrics.sample_quality import frechet_distance_of_features, sample_quality, standard_fid
from genzoo.models.base import DirectStep
from test_colour_data import face, made_cifar, write_celeba_lists

SHAPE = (3, 64, 64)


def made_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Smooth random colour images (low-frequency noise upsampled) and attribute rows of the translation models'
    layout [class, thickness, slant, colour, background]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    images = (torch.nn.functional.interpolate(coarse, size=64, mode="bilinear") * 255).round().to(torch.uint8)
    sizes = (10, 2, 2, 4, 2)
    labels = torch.stack([torch.randint(k, (n,), generator=g) for k in sizes], 1)
    return {"images": images, "y": labels}


def train_a_few(model, batches: int, batch_size: int = 4) -> list[dict[str, float]]:
    step = DirectStep(model, max_batches=batches)
    logs = []
    for index in range(batches):
        step.batch_index = index
        made = made_batch(batch_size, index)
        x = prepare(made["images"], model.input_kind, 256, torch.Generator().manual_seed(index))
        logs.append({k: float(v) for k, v in model.training_step({"x": x, "y": made["y"]}, step).items()})
    return logs


CASES = [
    ("dcgan", {}),
    ("pixelcnn", {"output": "softmax"}),
    ("row_lstm", {"output": "softmax"}),
    ("diagonal_bilstm", {"output": "softmax", "layers": 1}),
    ("vae", {"architecture": "conv", "likelihood": "logistic"}),
    ("cyclegan", {}),
    ("stargan", {}),
]


@pytest.mark.parametrize("name, settings", CASES, ids=[name for name, _ in CASES])
def test_model_trains_on_64x64_colour_images(name, settings):
    model = genzoo.create(name, SHAPE, **settings)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    logs = train_a_few(model, 2)
    assert all(math.isfinite(value) for log in logs for value in log.values())
    changed = [key for key, value in model.state_dict().items() if not torch.equal(value, before[key])]
    assert changed, "training changed no weight"
    model.eval()
    if model.family == "likelihood":  # 256-way softmax per colour channel: exact NLL and bits/dim
        test = prepare_test(made_batch(2, 99)["images"], model.input_kind, 256)
        report = model.evaluate(test, None, 256)
        assert report["bits_per_dim"] == pytest.approx(report["nll_nats"] / (3 * 64 * 64 * math.log(2)))
        assert 0 < report["bits_per_dim"] <= 8.5  # about 8 bits/dim untrained, i.e. uniform over 256 levels
    else:
        with torch.no_grad():
            assert model.sample(3).shape == (3, *SHAPE)


def test_progressive_gan_grows_from_4_to_64():
    model = genzoo.create("progan", SHAPE, resolution=64, phase_images=4, max_channels=8)
    logs = train_a_few(model, 10)  # 4 images a batch: level 0 stable, then 4 levels of fade-in + stable
    assert [log["resolution"] for log in logs] == [4, 8, 8, 16, 16, 32, 32, 64, 64, 64]
    assert logs[1]["alpha"] == 0 and logs[2]["alpha"] == 1 and logs[-1]["alpha"] == 1
    assert model.stage() == (4, 1.0)
    with torch.no_grad():
        assert model.sample(2).shape == (2, *SHAPE)


@pytest.mark.slow
def test_train_on_a_folder_at_64_pixels_end_to_end(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, image in enumerate(made_batch(12, 0)["images"]):
        Image.fromarray(image.permute(1, 2, 0).numpy()).resize((80, 64)).save(folder / f"{i}.png")
    run = genzoo.train(
        "dcgan", f"folder:{folder}?size=64", max_steps=2, batch_size=4, out=tmp_path / "run", samples=4, progress=False
    )
    config = json.loads((run.path / "config.json").read_text())
    assert config["image_shape"] == [3, 64, 64] and config["data"].endswith("?size=64")
    assert "no feature net" in run.metrics["evaluation_skipped"]
    assert Image.open(run.path / "samples.png").size[0] >= 64 * 2
    assert genzoo.load(run.path).image_shape == SHAPE


def test_feature_nets_train_on_cifar10_and_the_celeba_attributes(tmp_path, isolated_cache, monkeypatch):
    made_cifar(tmp_path)
    names = write_celeba_lists(tmp_path)
    (tmp_path / "img_align_celeba").mkdir()
    for i, name in enumerate(names):
        face(i).save(tmp_path / "img_align_celeba" / name)
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path))
    net, card = train_feature_net("cifar10", epochs=1, batch_size=4)
    assert (card["classes"], card["channels"], card["multi_label"]) == (10, 3, False)
    assert card["test_images"] == 3 and 0 <= card["test_accuracy"] <= 1
    net, card = train_feature_net("celeba?size=32", epochs=1, batch_size=2)
    assert (card["classes"], card["channels"], card["multi_label"]) == (40, 3, True)
    # the mean share of the 40 attributes right: a fraction in steps of 1/80 over the 2 test faces
    assert 0 <= card["test_accuracy"] <= 1 and (card["test_accuracy"] * 80) == pytest.approx(
        round(card["test_accuracy"] * 80)
    )
    save_feature_net(net, card, tmp_path / "features")
    loaded = load_feature_net("celeba?size=32", tmp_path / "features")
    assert loaded.multi_label
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(20, 3, 32, 32, generator=g), torch.rand(20, 3, 32, 32, generator=g)
    monkeypatch.setattr("genzoo.metrics.features.user_weights_dir", lambda: tmp_path / "features")
    report = sample_quality(fake, real, "celeba?size=32")
    assert report["frechet_distance"] > 0 and "inception_score_analogue" not in report  # no single class per face


def test_standard_fid_on_colour_images_with_a_made_torchscript_network(tmp_path):
    class TinyInception(torch.nn.Module):
        """Inception's calling convention ([N, 3, 299, 299] in [0, 255], ``return_features``), 12-d features."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 12, 5, stride=4)

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            assert x.shape[1:] == (3, 299, 299) and return_features
            return torch.relu(self.conv(x / 255)).mean((2, 3))

    network = TinyInception()
    path = tmp_path / "inception.pt"
    torch.jit.script(network).save(str(path))
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(30, 3, 64, 64, generator=g), torch.rand(30, 3, 64, 64, generator=g) ** 3
    report = standard_fid(b, a, path)
    resize = lambda x: torch.nn.functional.interpolate(x * 255, size=(299, 299), mode="bilinear")  # noqa: E731
    with torch.no_grad():
        expected = frechet_distance_of_features(network(resize(a), True).double(), network(resize(b), True).double())
    assert report["fid"] == pytest.approx(expected, rel=1e-6) and report["fid"] > 0
    assert report["fid_feature_net"] == "inception-v3 (inception.pt)"
    assert np.isclose(standard_fid(a, a, path)["fid"], 0, atol=1e-6)
