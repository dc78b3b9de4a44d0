"""The simulator's blueprint and the World each app that registers it gets.

Kept apart from the package so that the route modules can attach their views to :data:`bp`
without importing the package that imports them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request
from flask_babel import get_locale

from webapp.simulator.processes import REFUSAL
from webapp.simulator.world import World, seed_text

_PROJECT = Path(__file__).resolve().parents[2]
#: Where the app keeps its World in ``app.extensions``.
EXTENSION = "weixin_simulator"

bp = Blueprint(
    "simulator",
    __name__,
    url_prefix="/simulator",
    # Absolute folders, so pages and assets resolve the same way inside the main app and alone.
    template_folder=str(_PROJECT / "templates"),
    static_folder=str(_PROJECT / "static" / "simulator"),
    static_url_path="/static",
)


@bp.record_once
def _attach_world(state: Any) -> None:
    """Give the app its World, and keep the app's CSRF protection (if any) off these routes:
    WeChat's API takes no CSRF token, and the control panel is a local tool."""
    state.app.extensions.setdefault(EXTENSION, World())
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(bp)


@bp.before_request
def _one_process_only() -> Response | None:
    """Refuse every simulator request under a server of several processes: each would have its own
    World, and the simulator would half-work (see :mod:`webapp.simulator.processes`)."""
    if request.environ.get("wsgi.multiprocess"):
        return Response(REFUSAL + "\n", status=503, content_type="text/plain; charset=utf-8")
    return None


def service_root() -> str:
    """The service's base URL, for the callback URLs the simulator's forms suggest.

    ``SIMULATOR_SERVICE_URL`` when the simulator runs as a process of its own (``make simulator``
    sets it); otherwise the simulator is inside the service, at the address it is served at.
    """
    configured = current_app.config.get("SIMULATOR_SERVICE_URL")
    return str(configured or request.url_root).rstrip("/")


def service_host() -> str:
    """The service's host[:port]: the trusted domain the WeCom applications get by default, since
    WeCom sends people back only to the host and port the administrator registered."""
    configured = current_app.config.get("SIMULATOR_SERVICE_URL")
    return urlsplit(str(configured)).netloc if configured else request.host


@bp.app_template_global("seed_text")
def _seed_text(text: str) -> str:
    """A name or text of the seed in the page's language (anything else unchanged), for templates."""
    return seed_text(text, str(get_locale() or "en"))


def get_world(app: Flask | None = None) -> World:
    """The World of ``app`` (default: the current app), for in-process access from tests."""
    app = app or current_app
    return app.extensions[EXTENSION]
