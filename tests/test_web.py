"""genzoo serve's routes through FastAPI's test client: every page and endpoint on tiny runs of each family, the
numbers they return checked against the models themselves, and bad requests (oversized or non-image uploads,
unknown or path-like model ids, unknown words, bad values) answered with a 4xx and a one-line JSON error."""

import base64
import io
import math
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="genzoo serve needs the web extra (pip install 'genzoo[web]')")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from genzoo import progress, zoo  # noqa: E402
from genzoo.cli import main  # noqa: E402
from genzoo.data.transforms import prepare_test  # noqa: E402
from genzoo.web import actions  # noqa: E402
from genzoo.web.app import create_app  # noqa: E402
from genzoo.web.catalog import PAGES, Catalog, url_safe  # noqa: E402

PAGE_MODELS = {
    "likelihood": ["nade", "pixelcnn"],
    "latent": ["vae", "aae"],
    "infogan": ["infogan"],
    "text2image": ["text2image"],
    "translation": ["cyclegan", "stargan"],
    "puzzlegan": ["puzzlegan"],
    "progan": ["progan"],
}


@pytest.fixture(scope="module")
def app(web_runs):
    return create_app([str(path) for path in web_runs.values()])


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def stroke() -> bytes:
    """A drawn "1": a white bar on black, 280x280 like the page's canvas."""
    pixels = np.zeros((280, 280), np.uint8)
    pixels[50:230, 125:155] = 255
    return png(pixels)


def picture(url: str) -> np.ndarray:
    """A data URL's PNG as uint8 [H, W] (grey) or [H, W, 3]."""
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def cell(grid: np.ndarray, index: int, columns: int, size: int, padding: int = 2) -> np.ndarray:
    row, column = divmod(index, columns)
    top, left = padding + row * (size + padding), padding + column * (size + padding)
    return grid[top : top + size, left : left + size]


def post(client, action, files=None, **fields):
    response = client.post(f"/api/{action}", data={"wait": 10, **fields}, files=files)
    return response


def done(client, action, files=None, **fields):
    response = post(client, action, files, **fields)
    assert response.status_code == 200, response.text
    state = response.json()
    assert state["status"] == "done" and state["seconds"] >= 0
    return state["result"]


def one_line_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    for word in words:
        assert word in body["error"], body
    return body["error"]


def test_every_page_lists_its_models_with_their_papers_and_cards(client):
    for page, title in PAGES.items():
        response = client.get("/" if page == "gallery" else f"/{page}")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        html = response.text
        assert f"<h1>{title}</h1>" in html and "/static/app.js" in html and "/static/app.css" in html
        assert "http://" not in html and "https://" not in html  # nothing from elsewhere: it works offline
        for name in PAGE_MODELS.get(page, []):
            assert f'<option value="{name}">' in html or f'data-model="{name}"' in html, (page, name)
    gallery = client.get("/").text
    assert gallery.count('class="card"') == 11 and "/api/models/nade/card" in gallery
    assert "Larochelle &amp; Murray" in gallery and "Goodfellow et al." in gallery


def test_static_files_are_served_from_the_package(client):
    assert "class Pad" in client.get("/static/app.js").text
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_models_and_cards_name_no_paths(client, web_runs):
    models = client.get("/api/models").json()["models"]
    assert [m["id"] for m in models] == list(web_runs)
    pages = {m["id"]: m["page"] for m in models}
    assert pages["gan"] == "gallery" and pages["nade"] == "likelihood" and pages["stargan"] == "translation"
    card = client.get("/api/models/nade/card").json()
    assert card["model"] == "nade" and card["config"]["data"] == "digits" and "nll_nats" in card["metrics"]
    assert str(web_runs["nade"]) not in client.get("/api/models").text + str(card)


def test_the_default_serves_exactly_the_zoo():
    served = create_app()
    assert list(served.state.catalog.entries) == zoo.names()
    assert all(entry.card == zoo.card(entry.id) for entry in served.state.catalog.entries.values())


def test_ids_are_url_safe_and_unique(web_runs, tmp_path):
    assert url_safe("../..") == "run" and url_safe("my run (2)") == "my-run-2-" and url_safe(".hidden") == "hidden"
    copy = tmp_path / "nade"
    copy.symlink_to(web_runs["nade"], target_is_directory=True)
    catalog = Catalog.load([str(web_runs["nade"]), str(copy)])
    assert catalog.ids() == ["nade", "nade-2"]


def test_samples_repeat_with_their_seed(client):
    first = done(client, "samples", model="gan", n=4, seed=3)["image"]
    assert done(client, "samples", model="gan", n=4, seed=3)["image"] == first
    assert done(client, "samples", model="gan", n=4, seed=4)["image"] != first
    assert picture(first).shape == (2 + 2 * 10, 2 + 2 * 10)  # 2x2 grid of 8x8 digits, 2-pixel padding
    for name in PAGE_MODELS["translation"] + ["nade", "vae", "infogan", "text2image", "puzzlegan", "progan"]:
        assert picture(done(client, "samples", model=name, n=2, seed=0)["image"]).ndim >= 2, name


def test_likelihood_of_a_drawing_is_each_models_exact_nll(app, client):
    rows = done(client, "likelihood", files={"image": ("digit.png", stroke(), "image/png")})["rows"]
    assert [row["id"] for row in rows] == ["nade", "pixelcnn"]
    for row in rows:
        entry = app.state.catalog.get(row["id"])
        pixels = np.asarray(Image.open(io.BytesIO(stroke())).resize((8, 8), Image.Resampling.BILINEAR))[..., None]
        x = prepare_test(torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous(), "binary", 256)
        with torch.no_grad():
            nll = -float(entry.model.log_prob(x))
        assert row["nll_nats"] == pytest.approx(nll, rel=1e-5)
        assert row["bits_per_dim"] == pytest.approx(nll / (64 * math.log(2)), rel=1e-5)


def test_completions_keep_the_upper_half(client):
    result = done(client, "complete", files={"image": ("d.png", stroke())}, model="pixelcnn", n=3, method="naive")
    grid = picture(result["image"])
    given = cell(grid, 0, 4, 8)
    assert (given[4:] == 128).all()  # the half to complete is shown grey
    for index in range(1, 4):
        assert np.array_equal(cell(grid, index, 4, 8)[:4], given[:4])
    refused = post(client, "complete", files={"image": ("d.png", stroke())}, model="nade")
    one_line_error(refused, 400, "cannot complete")


def test_latent_walk_runs_from_one_reconstruction_to_the_other(app, client):
    entry = app.state.catalog.get("vae")
    other = np.zeros((280, 280), np.uint8)
    other[100:180, 40:240] = 255
    files = {"image_a": ("a.png", stroke()), "image_b": ("b.png", png(other))}
    grid = picture(done(client, "walk", files=files, model="vae", steps=5)["image"])
    assert grid.shape == (2 + 10, 2 + 5 * 10)
    for index, data in ((0, stroke()), (4, png(other))):
        x = actions.model_input(entry, actions.decode_upload(entry, data, "image"))
        expected = picture(actions.data_url(actions.shown(entry, entry.model.reconstruct(x)), padding=0))
        assert np.abs(cell(grid, index, 5, 8).astype(int) - expected.astype(int)).max() <= 1
    assert picture(done(client, "sample-one", model="vae", seed=1)["image"]).shape == (8, 8)


def test_the_manifold_needs_a_2d_latent_space(client):
    assert picture(done(client, "manifold", model="vae", size=6)["image"]).shape == (48, 48)
    one_line_error(post(client, "manifold", model="aae"), 400, "2-D latent space", "4")


def test_infogan_codes_move_the_image_and_the_row_shows_every_category(client):
    base = done(client, "infogan", model="infogan", category=2, continuous="0,0", seed=5)
    assert done(client, "infogan", model="infogan", category=2, continuous="0,0", seed=5) == base
    moved = done(client, "infogan", model="infogan", category=2, continuous="1.5,0", seed=5)
    assert moved["image"] != base["image"]
    row = picture(base["row"])
    assert row.shape == (12, 2 + 10 * 10)
    assert np.array_equal(cell(row, 2, 10, 8), picture(base["image"]))
    one_line_error(post(client, "infogan", model="infogan", category=10, continuous="0,0"), 400, "0..9")
    one_line_error(post(client, "infogan", model="infogan", continuous="0"), 400, "2 continuous codes")
    one_line_error(post(client, "infogan", model="infogan", continuous="9,0"), 400, "within")
    one_line_error(post(client, "infogan", model="infogan", continuous="a,b"), 400, "numbers")
    one_line_error(post(client, "infogan", model="infogan", continuous="nan,0"), 400, "finite")


def test_text_to_image_draws_known_words_and_names_unknown_ones(client):
    result = done(client, "text2image", model="text2image", text="a thick red seven leaning left", n=4)
    assert result["unknown"] == [] and picture(result["image"]).shape[:2] == (2 + 2 * 30, 2 + 2 * 30)
    one_line_error(post(client, "text2image", model="text2image", text="a purple banana"), 400, "banana, purple")
    one_line_error(post(client, "text2image", model="text2image", text="   "), 400, "type a caption")
    one_line_error(post(client, "text2image", model="text2image", text="x" * 300), 422, "text")
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    vocabulary = models["text2image"]["controls"]["vocabulary"]
    assert "seven" in vocabulary and "crimson" in vocabulary and "<unk>" not in vocabulary


def test_translation_is_the_models_own(app, client):
    entry = app.state.catalog.get("cyclegan")
    result = done(client, "translate", files={"image": ("d.png", stroke())}, model="cyclegan", to="B")
    x = actions.model_input(entry, actions.decode_upload(entry, stroke(), "image"))
    with torch.no_grad():
        expected = actions.data_url(actions.shown(entry, entry.model.translate(x, "B")), padding=0)
    assert result["output"] == expected and picture(result["input"]).shape == (28, 28, 3)
    assert done(client, "translate", files={"image": ("d.png", stroke())}, model="stargan", to="thick,red")["output"]
    one_line_error(post(client, "translate", files={"image": ("d.png", stroke())}, model="stargan", to="purple"), 400,
                   "unknown attribute 'purple'")  # fmt: skip
    one_line_error(post(client, "translate", files={"image": ("d.png", stroke())}, model="cyclegan", to="C"), 400)


def test_puzzle_cuts_the_patches_where_asked(app, client):
    entry = app.state.catalog.get("puzzlegan")
    pixels = np.zeros((8, 8), np.uint8)
    pixels[1:4, 2:5] = 200  # the first patch's square
    files = {"image": ("d.png", png(pixels))}
    result = done(client, "puzzle", files=files, model="puzzlegan", corners="1,2;4,4;0,0")
    assert result["corners"] == [[1, 2], [4, 4], [0, 0]]
    strip = picture(result["image"])  # 3 patches, true mask, predicted mask, image: 8-pixel cells, 2-pixel gaps
    assert strip.shape == (8, 6 * 10 - 2)
    first_patch = strip[:, :8][2:5, 2:5]  # centred in its cell
    assert (first_patch == 200).all()
    true_mask = strip[:, 30:38]
    assert (true_mask[1:4, 2:5] == 255).all() and true_mask[7, 0] == 0
    auto = done(client, "puzzle", files=files, model="puzzlegan", corners="", seed=1)
    assert len(auto["corners"]) == entry.model.config.patch_count
    one_line_error(post(client, "puzzle", files=files, model="puzzlegan", corners="1,2"), 400, "3 patches")
    one_line_error(post(client, "puzzle", files=files, model="puzzlegan", corners="1,2;4,4;7,7"), 400, "within")
    one_line_error(post(client, "puzzle", files=files, model="puzzlegan", corners="1;2"), 400, "top,left")
    assert picture(done(client, "test-image", model="puzzlegan", seed=2)["image"]).shape == (8, 8)
    assert picture(done(client, "decode", files=files, model="puzzlegan")["image"]).shape == (8, 8)


def test_progan_rows_for_every_resolution_grown_through(client):
    rows = done(client, "progan", model="progan", n=3, seed=1)["rows"]
    assert [row["resolution"] for row in rows] == [4, 8]
    assert [picture(row["image"]).shape for row in rows] == [(8, 2 + 3 * 6), (12, 2 + 3 * 10)]


def test_uploads_are_bounded_and_checked(client):
    huge = np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8)
    big_file = png(huge)
    assert len(big_file) > 1 * 2**20
    one_line_error(post(client, "likelihood", files={"image": ("big.png", big_file + b"\0" * 2**20)}), 413, "2 MB")
    one_line_error(post(client, "likelihood", files={"image": ("wide.png", png(np.zeros((1025, 1024), np.uint8)))}),
                   400, "1025", "more than 1,048,576")  # fmt: skip
    one_line_error(post(client, "likelihood", files={"image": ("x.png", b"GIF89a not really")}), 400, "not an image")
    one_line_error(post(client, "likelihood", files={"image": ("x.png", b"")}), 400)
    body = b"x" * (5 * 2**20)
    response = client.post("/api/likelihood", content=body, headers={"content-type": "multipart/form-data; boundary=x"})
    one_line_error(response, 413, "request body larger")
    chunks = (b"x" * 2**20 for _ in range(5))  # no Content-Length: counted as it arrives
    response = client.post(
        "/api/likelihood", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    one_line_error(response, 413, "request body larger")
    one_line_error(post(client, "likelihood"), 422, "image")
    assert post(client, "likelihood", files={"image": ("d.png", stroke())}).status_code == 200  # still serving


def test_models_are_named_only_by_listed_ids(client):
    for bad in ("../../etc/passwd", "/etc/passwd", "..", str(zoo.ZOO_DIR / "independent")):
        one_line_error(post(client, "samples", model=bad), 404, "unknown model id", "nade")
    paths = ["/api/models/..%2F..%2Fetc%2Fpasswd/card", "/api/models/../../etc/passwd/card", "/api/models/x/card"]
    paths += ["/static/../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/static/%2e%2e/%2e%2e/etc/passwd"]
    for path in paths:
        response = client.get(path)
        assert response.status_code == 404 and "root:" not in response.text, path
        one_line_error(response, 404)
    one_line_error(post(client, "text2image", model="nade", text="seven"), 400, "not one for the Text to image page")


def test_bad_values_are_one_line_422s(client):
    one_line_error(post(client, "samples", model="gan", n=0), 422, "n:")
    one_line_error(post(client, "samples", model="gan", n="many"), 422, "n:")
    one_line_error(post(client, "complete", files={"image": ("d.png", stroke())}, model="pixelcnn", method="slow"),
                   422, "method")  # fmt: skip
    one_line_error(client.get("/api/jobs/nope"), 404, "no job")


def test_long_jobs_report_progress_can_be_cancelled_and_do_not_block_the_server(app, client):
    def slow():
        for step in range(1, 1001):
            time.sleep(0.01)
            progress.advance(step, 1000)
        return {"finished": True}

    job = app.state.jobs.submit("slow", slow, [])
    state = client.get(f"/api/jobs/{job.id}", params={"wait": 0.3})
    assert state.status_code == 202 and state.json()["status"] == "running" and 0 < state.json()["progress"] < 1
    started = time.perf_counter()
    assert client.get("/api/models").status_code == 200 and client.get("/likelihood").status_code == 200
    assert done(client, "samples", model="gan", n=2)["image"]  # the second worker answers meanwhile
    assert time.perf_counter() - started < 5
    cancelled = client.delete(f"/api/jobs/{job.id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert job.finished.wait(5) and job.result is None


def test_a_job_past_the_time_limit_stops_with_a_503(web_runs):
    app = create_app([str(web_runs["pixelcnn"])], time_limit=0.2)
    client = TestClient(app)

    def slow():
        for step in range(1, 1001):
            time.sleep(0.01)
            progress.advance(step, 1000)
        return {}

    job = app.state.jobs.submit("slow", slow, [])
    one_line_error(client.get(f"/api/jobs/{job.id}", params={"wait": 5}), 503, "time limit of 0.2 s")
    assert job.progress < 0.5


def test_a_fault_is_a_500_with_one_line_and_the_server_goes_on(app, client):
    def broken():
        raise RuntimeError("shapes do not match\nsecond line")

    job = app.state.jobs.submit("broken", broken, [])
    one_line_error(client.get(f"/api/jobs/{job.id}", params={"wait": 5}), 500, "RuntimeError: shapes do not match")
    assert done(client, "samples", model="gan", n=1)


def test_a_naive_sampler_can_be_followed_to_its_end(client):
    response = post(client, "complete", files={"image": ("d.png", stroke())}, model="pixelcnn", n=2, method="naive",
                    wait=0)  # fmt: skip
    assert response.status_code in (200, 202)
    job = response.json()["job"]
    final = client.get(f"/api/jobs/{job}", params={"wait": 10}).json()
    assert final["status"] == "done" and final["progress"] == 1.0 and final["result"]["image"]


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    monkeypatch.setattr("sys.argv", ["genzoo", "serve"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: genzoo serve needs the web extra: pip install 'genzoo[web]'")


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("localhost", False), ("0.0.0.0", True)])
def test_serve_prints_the_url_and_warns_off_loopback(web_runs, monkeypatch, capsys, host, warned):
    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.update(app=app, **options))
    monkeypatch.setattr("sys.argv", ["genzoo", "serve", str(web_runs["gan"]), "--host", host, "--port", "8123"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0 and started["host"] == host and started["port"] == 8123
    assert out == f"genzoo serve: http://{host}:8123/ (1 models; Ctrl+C stops)\n"
    assert ("warning: serving on 0.0.0.0" in err) == warned
    assert list(started["app"].state.catalog.entries) == ["gan"]


def test_serve_refuses_a_bad_port_and_an_unknown_model(capsys, monkeypatch):
    for args, words in ((["--port", "70000"], "--port must be between 1 and 65535"), (["no-such-model"], "zoo")):
        monkeypatch.setattr("sys.argv", ["genzoo", "serve", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and words in err


def test_the_drawing_is_prepared_like_the_models_test_data(app):
    entry = app.state.catalog.get("text2image")
    pixels = np.full((28, 28, 3), 255, np.uint8)
    assert torch.equal(actions.model_input(entry, pixels), torch.ones(1, 3, 28, 28))  # signed range
    binary = app.state.catalog.get("nade")
    binary.model.run_config = {**binary.model.run_config, "levels": 2}
    try:
        grey = np.array([[[100], [200]]], np.uint8)
        assert actions.model_input(binary, grey).tolist() == [[[[0.0, 1.0]]]]  # binarized data: thresholded
    finally:
        binary.model.run_config = {**binary.model.run_config, "levels": 256}
