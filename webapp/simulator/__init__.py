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
check of the server configuration, and pushes of what the simulated phones do; and as WeCom calls
an application's 接收消息 server (:mod:`.qy_server`): its URL check, contact changes, enter_agent. It makes those
calls while answering its own request, so a server that handles one request at a time would
deadlock when it serves both the simulator and the service; ``flask run`` and werkzeug's server
are threaded, as a production server must be too.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask, redirect, url_for

# Route modules attach their views to ``bp`` when they are imported.
from webapp.simulator import control, mp, pages, qy, qy_server, qylogin, scan  # noqa: F401
from webapp.simulator.blueprint import _PROJECT, EXTENSION, bp, get_world  # noqa: F401


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

