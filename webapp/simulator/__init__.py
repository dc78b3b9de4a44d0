"""A local stand-in for the WeChat Official Account and WeCom APIs, plus a simulated phone.

It lets a newcomer try every flow without a WeChat account, and it is what the integration tests
talk to over real HTTP. The main app registers :data:`bp` when the simulator is enabled and points
its API bases at ``<server>/simulator/mp`` and ``<server>/simulator/qy``. That suits one process
(``make run``); a service served by several workers needs the simulator as one process of its own
(its state lives in memory, see :mod:`.processes`)::

    FLASK_SIMULATOR_SERVICE_URL=http://127.0.0.1:5000 \
        flask --app "webapp.simulator:create_standalone_app()" run --port 5001

(``make simulator`` runs exactly that), with the service's ``FLASK_WEIXIN_MP_API_BASE``,
``FLASK_WEIXIN_QY_API_BASE``, ``FLASK_WEIXIN_QY_LOGIN_URL`` and ``FLASK_WEIXIN_QY_OAUTH_URL`` pointing
at it and ``FLASK_WEIXIN_SIMULATOR=false`` (docs/deployment.md). The service's address,
``SIMULATOR_SERVICE_URL``, is what the simulator suggests as callback URLs and gives its WeCom
applications as their trusted domain; the callbacks themselves go wherever the server
configuration forms say, as with WeChat.

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

import os
from typing import Any, Mapping

from flask import Flask, redirect, url_for

# Route modules attach their views to ``bp`` when they are imported.
from webapp.simulator import control, mp, pages, qy, qy_server, qylogin, scan  # noqa: F401
from webapp.simulator.blueprint import _PROJECT, EXTENSION, bp, get_world  # noqa: F401


def create_standalone_app(config: Mapping[str, Any] | None = None) -> Flask:
    """An app that serves only the simulator (for tests, or to run it as its own process).

    ``FLASK_SIMULATOR_SERVICE_URL`` in the environment (or ``SIMULATOR_SERVICE_URL`` in ``config``)
    is the service's base URL; without it the simulator assumes the service at its own address.
    """
    from flask_babel import Babel

    from webapp.i18n import select_locale

    app = Flask(__name__, static_folder=None)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(_PROJECT / "webapp" / "translations")
    app.config["SIMULATOR_SERVICE_URL"] = os.environ.get("FLASK_SIMULATOR_SERVICE_URL", "").strip() or None
    if config:
        app.config.update(config)
    Babel(app, locale_selector=select_locale)
    app.register_blueprint(bp)

    @app.get("/")
    def home() -> Any:
        """The simulator is the whole app here: send visitors to the phone page."""
        return redirect(url_for("simulator.index"))

    return app

