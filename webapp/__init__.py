"""The WeChat notification service: a Flask application built by :func:`create_app`."""
from __future__ import annotations

import os

from flask import Flask
from flask_babel import get_locale
from werkzeug.middleware.proxy_fix import ProxyFix

from webapp import audit, cli, errors, jobs, logs, metrics, runtime, secretbox, security
from webapp.config import load_config
from webapp.extensions import babel, bootstrap, csrf, db, login_manager
from webapp.i18n import LANGUAGES, human_time, select_locale
from webapp.web import nav_links

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application; each line is one part, in the order the parts depend on each other.

    Nothing is started here: the delivery pool and the HTTP session are made on first use, and the
    in-process scheduler (when SCHEDULER_ENABLED) starts with the first request this process serves.
    """
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(PROJECT_ROOT, "templates"),
        static_folder=os.path.join(PROJECT_ROOT, "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    load_config(app, test_config)  # settings: defaults, instance file, FLASK_* environment
    runtime.install(app)  # this process's pool, HTTP session, channel snapshot, scheduler slot
    trust_proxies(app)
    logs.init_app(app)  # request ids and access lines
    metrics.init_app(app)  # request timing
    register_extensions(app)  # database, secret box, CSRF, Babel, Bootstrap, sign-in
    security.init_app(app)  # security headers and CSP
    register_blueprints(app)
    register_callback_handlers(app)
    errors.register(app)
    cli.register(app)
    jobs.start_with_first_request(app)
    return app


def trust_proxies(app: Flask) -> None:
    """Behind N reverse proxies (PROXY_COUNT), take the client address and scheme from their headers."""
    count = int(app.config.get("PROXY_COUNT") or 0)
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count)


def register_extensions(app: Flask) -> None:
    """Bind the extension objects of ``webapp.extensions`` to this app."""
    db.init_app(app)
    secretbox.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    bootstrap.init_app(app)
    login_manager.init_app(app)
    app.jinja_env.globals.update(LANGUAGES=LANGUAGES, nav_links=nav_links, get_locale=get_locale)
    app.jinja_env.filters.update(human_time=human_time, audit_sentence=audit.sentence)


def register_blueprints(app: Flask) -> None:
    """Mount each part of the service; the simulator only when it is switched on."""
    from webapp.api.pages import bp as messages_bp
    from webapp.ops.routes import bp as ops_bp
    from webapp.alerts.routes import bp as webhooks_bp
    from webapp.api.routes import bp as api_bp
    from webapp.auth.routes import bp as auth_bp
    from webapp.binding.routes import bp as binding_bp
    from webapp.callback.routes import bp as callback_bp
    from webapp.console.routes import bp as console_bp
    from webapp.home.routes import bp as home_bp
    from webapp.setup import routes as _first_run, wizard as _wizard, wizard_server as _server  # noqa: F401  (attach their views)
    from webapp.setup.blueprint import bp as setup_bp
    from webapp.users.routes import bp as users_bp

    app.register_blueprint(home_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(setup_bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(users_bp)
    app.register_blueprint(callback_bp)
    app.register_blueprint(binding_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(messages_bp)
    app.register_blueprint(ops_bp)
    csrf.exempt(callback_bp)  # WeChat authenticates by signature, not by a session
    csrf.exempt(ops_bp)  # a monitoring system has no session and no form token
    if app.config["WEIXIN_SIMULATOR"]:
        from webapp.simulator import bp as simulator_bp

        app.register_blueprint(simulator_bp)
        # The simulator's forms are a local testing tool, not part of the service's protected pages.
        csrf.exempt(simulator_bp)


def register_callback_handlers(app: Flask) -> None:
    """Which function answers which WeChat event; any other message is answered ``success``."""
    from webapp.binding import handlers as binding
    from webapp.callback import handlers
    from webapp.delivery import handlers as delivery
    from webapp.models import CHANNEL_QYWX

    table = handlers.install(app)
    table.add("event", "subscribe", binding.subscribed)  # a follow, or a bind QR code scanned before following
    table.add("event", "scan", binding.scanned)  # a follower scanned a bind QR code
    table.add("event", "unsubscribe", binding.unsubscribed)  # the binding stops receiving
    table.add("event", "templatesendjobfinish", delivery.template_finished)  # a template message's receipt
    # The WeCom application's callback: contact changes end or move bindings; enter_agent and members'
    # messages need nothing but counting.
    table.add("event", "change_contact", binding.contact_changed, channel=CHANNEL_QYWX)
