"""genzoo serve in a real browser: Playwright drives Debian's chromium against a running `genzoo serve` of tiny runs,
draws on the canvas, moves an InfoGAN slider, submits a caption and a translation, and checks that new images
appear, that the console stays free of errors and that no request leaves the server. A screenshot of each page
goes to GENZOO_SCREENSHOTS (default: a temporary folder, printed)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("no browser: /usr/bin/chromium is absent (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("fastapi", reason="genzoo serve needs the web extra (pip install 'genzoo[web]')")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright (pip install playwright)"
)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(web_runs, tmp_path_factory):
    """`genzoo serve RUN...` in its own process; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "genzoo", "serve", *map(str, web_runs.values()), "--port", str(port)]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"genzoo serve exited with {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"genzoo serve did not answer within 120 s: {log.read_text()}")
                time.sleep(0.2)
        assert f"genzoo serve: {url}/ ({len(web_runs)} models" in log.read_text()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(server):
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    folder = Path(os.environ.get("GENZOO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


class Visit:
    """A page with its console errors and every URL it requested recorded."""

    def __init__(self, browser, server, path):
        self.server = server
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors, self.requests = [], []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(server + path)

    def new_image(self, selector, before=None):
        """Waits until the <img> is shown with a source other than ``before``; returns the source."""
        self.page.wait_for_function(
            "([selector, before]) => { const img = document.querySelector(selector);"
            " return img && !img.hidden && img.src.startsWith('data:image/png') && img.src !== before"
            " && img.complete && img.naturalWidth > 0; }",
            arg=[selector, before],
        )
        return self.page.locator(selector).get_attribute("src")

    def draw(self, selector, points):
        box = self.page.locator(selector).bounding_box()
        mouse = self.page.mouse
        mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
        mouse.down()
        for x, y in points[1:]:
            mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=5)
        mouse.up()

    def finish(self, screenshots, name):
        self.page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        assert self.errors == [], self.errors
        elsewhere = [url for url in self.requests if not url.startswith((self.server, "data:"))]
        assert elsewhere == [], elsewhere  # no CDN, no fonts, nothing from elsewhere
        self.page.close()


def test_gallery_shows_every_models_samples(browser, server, screenshots, web_runs):
    visit = Visit(browser, server, "/")
    for name in web_runs:
        visit.new_image(f'.card[data-model="{name}"] img')
    first = visit.page.locator('.card[data-model="gan"] img').get_attribute("src")
    visit.page.click("#resample")
    visit.new_image('.card[data-model="gan"] img', first)
    assert visit.page.locator(".card .message").first.inner_text().endswith(" s")
    visit.finish(screenshots, "gallery")


def test_likelihood_scores_a_drawn_stroke_and_completes_it(browser, server, screenshots):
    visit = Visit(browser, server, "/likelihood")
    visit.draw("#drawing", [(0.5, 0.15), (0.52, 0.5), (0.5, 0.85)])
    visit.page.wait_for_function("document.querySelector('tr[data-model=nade] .nats').textContent !== '–'")
    for name in ("nade", "pixelcnn"):
        assert float(visit.page.locator(f"tr[data-model={name} ] .nats").inner_text()) > 0
    visit.page.select_option("#complete-method", "naive")
    visit.page.click("#complete")
    visit.new_image("#completions")
    visit.finish(screenshots, "likelihood")


def test_latent_walk_and_manifold(browser, server, screenshots):
    visit = Visit(browser, server, "/latent")
    visit.page.click('button.sample-into[data-pad="start"]')
    visit.page.wait_for_function("document.querySelector('.status .message').textContent.endsWith(' s')")
    visit.draw("#end", [(0.3, 0.3), (0.7, 0.7)])
    visit.page.click("#walk")
    visit.new_image("#walk-result")
    visit.page.click("#manifold")
    visit.new_image("#manifold-result")
    visit.finish(screenshots, "latent")


def test_infogan_slider_changes_the_image(browser, server, screenshots):
    visit = Visit(browser, server, "/infogan")
    before = visit.new_image("#infogan-image")
    visit.page.locator("#sliders input").first.fill("1.5")
    after = visit.new_image("#infogan-image", before)
    assert after != before and visit.page.locator("#sliders output").first.inner_text() == "1.5"
    visit.page.select_option("#category", "3")
    visit.new_image("#infogan-image", after)
    visit.finish(screenshots, "infogan")


def test_text_to_image_draws_a_caption(browser, server, screenshots):
    visit = Visit(browser, server, "/text2image")
    assert visit.page.locator("#vocabulary button").count() > 30
    visit.page.fill("#caption", "a thin blue three leaning right")
    visit.page.click("#draw")
    visit.new_image("#caption-result")
    visit.finish(screenshots, "text2image")


def test_translation_of_a_drawn_digit(browser, server, screenshots):
    visit = Visit(browser, server, "/translation")
    visit.draw("#source", [(0.4, 0.2), (0.6, 0.2), (0.5, 0.8)])
    visit.page.click("#translate")
    visit.new_image("#translation-output")
    visit.new_image("#translation-input")
    visit.page.select_option("#model", "stargan")
    visit.page.select_option("select[data-group=thickness]", "thick")
    visit.page.click("#translate")
    visit.new_image("#translation-output")
    visit.finish(screenshots, "translation")


def test_puzzle_from_patches_clicked_on_a_test_digit(browser, server, screenshots):
    visit = Visit(browser, server, "/puzzlegan")
    visit.page.wait_for_function("document.querySelector('#patch-help').textContent.startsWith('0 of 3')")
    for x, y in ((0.3, 0.3), (0.6, 0.5), (0.4, 0.8)):
        box = visit.page.locator("#puzzle-source").bounding_box()
        visit.page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    assert visit.page.locator("#patch-help").inner_text().startswith("3 of 3")
    visit.page.click("#solve")
    visit.new_image("#puzzle-result")
    visit.finish(screenshots, "puzzlegan")


def test_progan_rows_per_resolution(browser, server, screenshots):
    visit = Visit(browser, server, "/progan")
    visit.page.wait_for_function("document.querySelectorAll('#resolutions img').length === 2")
    visit.new_image("#resolutions figure:last-child img")
    assert visit.page.locator("#resolutions figcaption").all_inner_texts() == ["4x4", "8x8"]
    visit.finish(screenshots, "progan")
