"""The FastAPI app of ``genzoo serve``: one HTML page per family (Jinja2 templates, the package's own JS and CSS) and
a JSON API whose computations run as jobs (:mod:`genzoo.web.jobs`).

Requests name models only by the ids of ``GET /api/models``; uploads are bounded (2 MB, 1024x1024 pixels) and
decoded as ``folder:`` images are; every error is a 4xx (or 5xx for a fault) with a one-line JSON body
``{"error": "..."}``, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genzoo.web import actions
from genzoo.web.catalog import PAGES, Catalog, Entry
from genzoo.web.jobs import Busy, Job, Jobs

HERE = Path(__file__).parent
DEFAULT_TIME_LIMIT = 120.0  # seconds per request, the longest sampler included
WAIT = 1.0  # seconds a request waits for its result before answering with the job's state
MAX_WAIT = 10.0
MAX_BODY_BYTES = 2 * actions.MAX_UPLOAD_BYTES + 64 * 2**10  # two images (a latent walk) and the form around them
CODE_LIMIT = 3.0  # InfoGAN continuous codes accepted: the traversal range of the paper's Fig. 2, and a little more
STATUS_CODES = {"queued": 202, "running": 202, "done": 200, "cancelled": 200, "failed": 400, "timeout": 503}


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length and by counting what arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = error(413, f"request body larger than {self.max_bytes / 2**20:.1f} MB")
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body larger than {self.max_bytes / 2**20:.1f} MB")
            return message

        await self.app(scope, counted, send)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def create_app(
    sources: list[str] | None = None, catalog: Catalog | None = None, time_limit: float = DEFAULT_TIME_LIMIT
) -> FastAPI:
    """The app serving ``sources`` (run directories or zoo names; default: every zoo entry), or a loaded
    ``catalog``."""
    if catalog is None:
        from genzoo import zoo

        catalog = Catalog.load(zoo.names() if sources is None else sources)
    jobs = Jobs(time_limit)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(title="genzoo", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.catalog, app.state.jobs = catalog, jobs
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{item['loc'][-1]}: {item['msg']}" for item in exc.errors()]
        return error(422, "; ".join(problems) or "invalid request")

    def entry(entry_id: str, page: str | None = None) -> Entry:
        try:
            found = catalog.get(entry_id)
        except KeyError:
            raise HTTPException(
                404, f"unknown model id {entry_id!r}; the server has: {', '.join(catalog.ids())}"
            ) from None
        if page is not None and found.page != page:
            raise HTTPException(400, f"{entry_id} is a {found.model.name} model, not one for the {PAGES[page]} page")
        return found

    async def upload(file: UploadFile, field: str) -> bytes:
        data = await file.read(actions.MAX_UPLOAD_BYTES + 1)
        if len(data) > actions.MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"image upload {field!r} is larger than {actions.MAX_UPLOAD_BYTES // 2**20} MB")
        return data

    async def run(label: str, work: Callable[[], dict[str, Any]], entries: list[Entry], wait: float) -> JSONResponse:
        try:
            job = jobs.submit(label, work, [e.lock for e in sorted(entries, key=lambda e: e.id)])
        except Busy as err:
            raise HTTPException(429, str(err)) from None
        return await answer(job, wait)

    async def answer(job: Job, wait: float) -> JSONResponse:
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT)
        while not job.finished.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if job.status == "error":
            return error(500, job.error or "internal error")
        if job.status in ("failed", "timeout"):
            return error(STATUS_CODES[job.status], job.error or job.status)
        return JSONResponse(job.state(), status_code=STATUS_CODES[job.status])

    # ---- pages ------------------------------------------------------------------------------------------------

    def page(name: str) -> Callable[[Request], Any]:
        async def show(request: Request) -> HTMLResponse:
            entries = [e.summary() for e in catalog.on_page(name)]
            context = {"page": name, "title": PAGES[name], "pages": pages_with_counts(), "entries": entries}
            return templates.TemplateResponse(request, f"{name}.html", context)

        return show

    def pages_with_counts() -> list[dict[str, Any]]:
        return [
            {"name": name, "title": title, "path": "/" if name == "gallery" else f"/{name}",
             "count": len(catalog.on_page(name))}
            for name, title in PAGES.items()
        ]  # fmt: skip

    for name in PAGES:
        app.add_api_route("/" if name == "gallery" else f"/{name}", page(name), response_class=HTMLResponse)

    # ---- models -----------------------------------------------------------------------------------------------

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        return {"models": [e.summary() for e in catalog.entries.values()]}

    @app.get("/api/models/{model_id}/card")
    async def card(model_id: str) -> dict[str, Any]:
        return entry(model_id).card

    # ---- jobs -------------------------------------------------------------------------------------------------

    def find_job(job_id: str) -> Job:
        try:
            return jobs.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r} (finished jobs are forgotten after a while)") from None

    @app.get("/api/jobs/{job_id}")
    async def job_state(job_id: str, wait: float = 0.5) -> JSONResponse:
        return await answer(find_job(job_id), wait)

    @app.delete("/api/jobs/{job_id}")
    async def cancel(job_id: str) -> JSONResponse:
        job = find_job(job_id)
        jobs.cancel(job_id)
        return await answer(job, 0.2)

    # ---- computations -----------------------------------------------------------------------------------------

    @app.post("/api/samples")
    async def samples(
        model: str = Form(), n: int = Form(16, ge=1, le=64), seed: int = Form(0), wait: float = Form(WAIT)
    ) -> JSONResponse:
        chosen = entry(model)
        return await run("samples", lambda: actions.samples(chosen, n, seed), [chosen], wait)

    @app.post("/api/sample-one")
    async def sample_one(model: str = Form(), seed: int = Form(0), wait: float = Form(WAIT)) -> JSONResponse:
        chosen = entry(model)
        return await run("sample-one", lambda: actions.one_sample(chosen, seed), [chosen], wait)

    @app.post("/api/likelihood")
    async def likelihood(image: UploadFile = File(), wait: float = Form(WAIT)) -> JSONResponse:
        data = await upload(image, "image")
        chosen = catalog.on_page("likelihood")
        if not chosen:
            raise HTTPException(400, "the server has no likelihood model")

        def work() -> dict[str, Any]:
            decoded = {e.id: actions.decode_upload(e, data, "image") for e in chosen}
            return actions.likelihood(chosen, decoded)

        return await run("likelihood", work, chosen, wait)

    @app.post("/api/complete")
    async def complete(
        model: str = Form(),
        image: UploadFile = File(),
        n: int = Form(4, ge=1, le=16),
        method: str = Form("fast", pattern="^(fast|naive)$"),
        seed: int = Form(0),
        wait: float = Form(WAIT),
    ) -> JSONResponse:
        chosen = entry(model, "likelihood")
        controls = chosen.summary()["controls"]
        if not controls["completion"]:
            raise HTTPException(400, f"{model} ({chosen.model.name}) cannot complete images")
        data = await upload(image, "image")
        method = method if controls["methods"] else ""

        def work() -> dict[str, Any]:
            return actions.complete(chosen, actions.decode_upload(chosen, data, "image"), n, method, seed)

        return await run("complete", work, [chosen], wait)

    @app.post("/api/walk")
    async def walk(
        model: str = Form(),
        image_a: UploadFile = File(),
        image_b: UploadFile = File(),
        steps: int = Form(10, ge=2, le=16),
        spherical: bool = Form(False),
        wait: float = Form(WAIT),
    ) -> JSONResponse:
        chosen = entry(model, "latent")
        start, end = await upload(image_a, "image_a"), await upload(image_b, "image_b")

        def work() -> dict[str, Any]:
            decoded = [
                actions.decode_upload(chosen, data, name) for data, name in ((start, "image_a"), (end, "image_b"))
            ]
            return actions.walk(chosen, *decoded, steps, spherical)

        return await run("walk", work, [chosen], wait)

    @app.post("/api/manifold")
    async def manifold(
        model: str = Form(), size: int = Form(12, ge=2, le=20), wait: float = Form(WAIT)
    ) -> JSONResponse:
        chosen = entry(model, "latent")
        if chosen.model.latent_dim != 2:
            raise HTTPException(400, f"the manifold needs a 2-D latent space; {model} has {chosen.model.latent_dim}")
        return await run("manifold", lambda: actions.manifold(chosen, size), [chosen], wait)

    @app.post("/api/infogan")
    async def infogan(
        model: str = Form(),
        category: int = Form(0, ge=0),
        continuous: str = Form("", max_length=256),
        seed: int = Form(0),
        wait: float = Form(WAIT),
    ) -> JSONResponse:
        chosen = entry(model, "infogan")
        if category >= chosen.model.config.categories:
            raise HTTPException(400, f"category must be in 0..{chosen.model.config.categories - 1}")
        codes = parse_numbers(continuous, "continuous")
        if any(not -CODE_LIMIT <= value <= CODE_LIMIT for value in codes):
            raise HTTPException(400, f"continuous codes must be within [-{CODE_LIMIT:g}, {CODE_LIMIT:g}]")
        return await run("infogan", lambda: actions.infogan(chosen, category, codes, seed), [chosen], wait)

    @app.post("/api/text2image")
    async def text2image(
        model: str = Form(),
        text: str = Form(max_length=256),
        n: int = Form(8, ge=1, le=64),
        seed: int = Form(0),
        wait: float = Form(WAIT),
    ) -> JSONResponse:
        chosen = entry(model, "text2image")
        return await run("text2image", lambda: actions.text_to_image(chosen, text, n, seed), [chosen], wait)

    @app.post("/api/translate")
    async def translate(
        model: str = Form(), image: UploadFile = File(), to: str = Form(max_length=64), wait: float = Form(WAIT)
    ) -> JSONResponse:
        chosen = entry(model, "translation")
        data = await upload(image, "image")

        def work() -> dict[str, Any]:
            return actions.translate(chosen, actions.decode_upload(chosen, data, "image"), to)

        return await run("translate", work, [chosen], wait)

    @app.post("/api/test-image")
    async def test_image(model: str = Form(), seed: int = Form(0), wait: float = Form(WAIT)) -> JSONResponse:
        chosen = entry(model)
        return await run("test-image", lambda: actions.test_image(chosen, seed), [chosen], wait)

    @app.post("/api/decode")
    async def decode(model: str = Form(), image: UploadFile = File(), wait: float = Form(WAIT)) -> JSONResponse:
        chosen = entry(model)
        data = await upload(image, "image")

        def work() -> dict[str, Any]:
            x = actions.model_input(chosen, actions.decode_upload(chosen, data, "image"))
            return {"image": actions.data_url(actions.shown(chosen, x.float()), padding=0)}

        return await run("decode", work, [chosen], wait)

    @app.post("/api/puzzle")
    async def puzzle(
        model: str = Form(),
        image: UploadFile = File(),
        corners: str = Form("", max_length=256),
        seed: int = Form(0),
        wait: float = Form(WAIT),
    ) -> JSONResponse:
        chosen = entry(model, "puzzlegan")
        data = await upload(image, "image")
        points = parse_corners(corners)

        def work() -> dict[str, Any]:
            return actions.puzzle(chosen, actions.decode_upload(chosen, data, "image"), points, seed)

        return await run("puzzle", work, [chosen], wait)

    @app.post("/api/progan")
    async def progan(
        model: str = Form(), n: int = Form(8, ge=1, le=16), seed: int = Form(0), wait: float = Form(WAIT)
    ) -> JSONResponse:
        chosen = entry(model, "progan")
        return await run("progan", lambda: actions.progan(chosen, n, seed), [chosen], wait)

    return app


def parse_numbers(text: str, field: str) -> list[float]:
    """ "0.5,-1" -> [0.5, -1.0]; anything else is a 400 naming the field."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise HTTPException(400, f"{field} must be numbers separated by commas, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise HTTPException(400, f"{field} must be finite numbers")
    return values


def parse_corners(text: str) -> list[tuple[int, int]] | None:
    """ "3,4;10,12" -> [(3, 4), (10, 12)] (top, left of each patch); empty: None (chosen as in training)."""
    if not text.strip():
        return None
    try:
        points = [tuple(int(v) for v in pair.split(",")) for pair in text.split(";") if pair.strip()]
    except ValueError:
        raise HTTPException(400, f"corners must be top,left pairs separated by ';', got {text!r}") from None
    if any(len(point) != 2 for point in points):
        raise HTTPException(400, f"corners must be top,left pairs separated by ';', got {text!r}")
    return points  # type: ignore[return-value]
