"""``genzoo serve``: a local web explorer of every model (FastAPI, Jinja2 templates, the package's own JS and CSS;
nothing is fetched from elsewhere, so it works offline). Needs the optional extra: ``pip install 'genzoo[web]'``.

Pages, in the lecture's order: a gallery of every model's samples; the likelihood of a drawn digit under each
explicit model, and completions of its lower half; latent walks and the 2-D manifold; InfoGAN's codes on sliders;
text to image; translation; Puzzle-GAN; Progressive GAN at every resolution it grew through.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from genzoo.errors import GenzooError

if TYPE_CHECKING:
    from fastapi import FastAPI

WEB_MODULES = ("fastapi", "uvicorn", "jinja2", "multipart")
INSTALL_HINT = "genzoo serve needs the web extra: pip install 'genzoo[web]'"


def check_installed() -> None:
    """A one-line GenzooError naming the extra when one of its packages is missing."""
    import importlib.util

    missing = [name for name in WEB_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise GenzooError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


def create_app(sources: list[str] | None = None, time_limit: float | None = None) -> FastAPI:
    """The web app serving ``sources`` (run directories or zoo names; None: every zoo entry)."""
    check_installed()
    from genzoo.web.app import DEFAULT_TIME_LIMIT
    from genzoo.web.app import create_app as build

    return build(sources, time_limit=time_limit or DEFAULT_TIME_LIMIT)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(sources: list[str], host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the models, print the URL and serve until interrupted; ``sources`` empty: every zoo entry."""
    import typer

    check_installed()
    if not 1 <= port <= 65535:
        raise GenzooError(f"--port must be between 1 and 65535, got {port}")
    import uvicorn

    app = create_app(sources or None)
    count = len(app.state.catalog.entries)
    if not is_loopback(host):
        typer.echo(
            f"warning: serving on {host}, not 127.0.0.1: anyone who can reach this machine can use the explorer "
            "(it has no login)",
            err=True,
        )
    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"genzoo serve: http://{shown_host}:{port}/ ({count} models; Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
