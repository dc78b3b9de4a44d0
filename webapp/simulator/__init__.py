"""A local stand-in for the WeChat Official Account and WeCom APIs, plus a simulated phone.

It lets a newcomer try every flow without a WeChat account, and it is what the integration tests
talk to over real HTTP. The main app registers :data:`bp` when the simulator is enabled and points
its API bases at ``<server>/simulator/mp`` and ``<server>/simulator/qy``; it can also run alone::

    flask --app "webapp.simulator:create_standalone_app()" run

Each app that registers the blueprint gets its own :class:`~webapp.simulator.world.World`
(see :func:`get_world`), so tests in one process can run several independent simulators.

Besides the APIs it serves pages a person would see: the phones (``/simulator/``), "Scan a QR
code" (``/simulator/scan``, :mod:`.scan`), and WeCom's sign-in pages with their "Scan with the
WeCom app" page (``/simulator/qy/login``, ``/simulator/qy/oauth2/authorize``, ``/simulator/qy/
scan``, :mod:`.qylogin`).

The simulator also calls the service, as WeChat calls a callback URL (:mod:`.push`): the URL
check of the server configuration, and pushes of what the simulated phones do. It makes those
calls while answering its own request, so a server that handles one request at a time would
deadlock when it serves both the simulator and the service; ``flask run`` and werkzeug's server
are threaded, as a production server must be too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from flask import Blueprint, Flask, current_app, redirect, url_for

from webapp.simulator.world import World

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


def get_world(app: Flask | None = None) -> World:
    """The World of ``app`` (default: the current app), for in-process access from tests."""
    app = app or current_app
    return app.extensions[EXTENSION]


def create_standalone_app(config: Mapping[str, Any] | None = None) -> Flask:
    """An app that serves only the simulator (for tests, or to run it as its own process)."""
    from flask_babel import Babel

    from webapp.i18n import select_locale

    app = Flask(__name__, static_folder=None)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(_PROJECT / "webapp" / "translations")
    if config:
        app.config.update(config)
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)

    @app.get("/")
    def home() -> Any:
        """The simulator is the whole app here: send visitors to the phone page."""
        return redirect(url_for("simulator.index"))

    return app


# Route modules attach their views to ``bp``; imported last because they import ``bp``.
from webapp.simulator import control, mp, pages, qy, qylogin, scan  # noqa: E402,F401
