"""Shared fixtures in the flaskr style: ``app``, ``client``, ``runner`` and an ``auth`` helper.

Every test gets its own real SQLite file, copied from one database migrated once per session.
Tests marked ``postgres`` run against the PostgreSQL named by ``TEST_DATABASE_URL`` (set by
``.ci/run``); without it they are skipped.
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from webapp import create_app, migrate, runtime
from webapp.database import make_engine
from webapp.extensions import db

TEST_SECRET_KEY = "test-secret-key-not-for-production"
ADMIN = ("admin", "correct-horse-9")
USER = ("alice", "tulip-meadow-42")


def base_config(database_url: str, **extra) -> dict:
    """The configuration every test app starts from."""
    config = {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "SCHEDULER_ENABLED": False,
        "WEIXIN_SIMULATOR": False,
        "WEIXIN_MP_API_BASE": "http://127.0.0.1:9/simulator/mp",
        "WEIXIN_QY_API_BASE": "http://127.0.0.1:9/simulator/qy",
    }
    config.update(extra)
    return config


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> str:
    """An SQLite file with the full schema, made once and copied for each test."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")  # as the app opens it: WAL mode, kept by every copy
    migrate.upgrade(engine)
    engine.dispose()
    return str(path)


@pytest.fixture
def database_url(tmp_path, migrated_template) -> str:
    """A fresh, migrated SQLite database for one test."""
    path = tmp_path / "test.sqlite3"
    shutil.copyfile(migrated_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def make_app(database_url):
    """Build an app on this test's database with extra configuration."""
    apps = []

    def factory(**extra):
        app = create_app(base_config(extra.pop("DATABASE_URL", database_url), **extra))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        # Calls and renewals still running would otherwise hold connections the dispose cannot close.
        runtime.state(app).shutdown()
        app.extensions["database"].engine.dispose()


@pytest.fixture
def app(make_app):
    """The application on a fresh database, with no users yet."""
    return make_app()


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A runner for the app's ``flask`` commands."""
    return app.test_cli_runner()


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


class AuthActions:
    """Signs in and out through the real pages, with the CSRF token read from the form."""

    def __init__(self, client):
        self._client = client

    def login(self, username: str = ADMIN[0], password: str = ADMIN[1], next: str | None = None):
        page = self._client.get("/login")
        url = "/login" + (f"?next={next}" if next else "")
        return self._client.post(
            url, data={"username": username, "password": password, "csrf_token": csrf_token(page.text)}
        )

    def logout(self):
        page = self._client.get("/")
        return self._client.post("/logout", data={"csrf_token": csrf_token(page.text)})


@pytest.fixture
def auth(client):
    """Sign-in helper bound to ``client``."""
    return AuthActions(client)


@pytest.fixture
def users(app):
    """An administrator (ADMIN) and an ordinary user (USER), so set-up is done."""
    from webapp.auth.services import create_user

    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        db.session.remove()
    return {"admin": ADMIN, "user": USER}


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL URL for database tests, from TEST_DATABASE_URL (skipped when unset)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set (set by .ci/run)")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def either_database_url(request, tmp_path, migrated_template):
    """A migrated database for one test: an SQLite copy, or a fresh PostgreSQL schema (the postgres variant).

    A test module runs on both by overriding ``database_url`` with this fixture.
    """
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(migrated_template, path)
        yield f"sqlite:///{path}"
        return
    from sqlalchemy import create_engine

    from tests.crash_support import postgres_schema

    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


class Simulator:
    """The WeChat simulator served over real HTTP, with its control API."""

    def __init__(self, base_url: str, app):
        self.base_url = base_url
        self.app = app
        self.mp_base = f"{base_url}/simulator/mp"
        self.qy_base = f"{base_url}/simulator/qy"
        self._control = f"{base_url}/simulator/_control"

    def control(self, path: str, payload: dict | None = None, method: str = "POST"):
        """Call the simulator's control API and return its JSON."""
        import requests

        response = requests.request(method, f"{self._control}/{path}", json=payload, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def calls(self, endpoint: str) -> int:
        """How many times an API endpoint (e.g. ``stable_token``) was called."""
        return self.control("stats", method="GET")["calls"].get(endpoint, 0)

    def messages(self, **filters) -> list:
        """Messages the simulator delivered, oldest first."""
        import requests

        response = requests.get(f"{self._control}/messages", params=filters, timeout=10)
        return response.json()["messages"]


@pytest.fixture(scope="session")
def _simulator_server():
    from tests.livesrv import serve
    from webapp.simulator import create_standalone_app

    sim_app = create_standalone_app()
    with serve(sim_app) as base_url:
        yield Simulator(base_url, sim_app)


@pytest.fixture
def simulator(_simulator_server):
    """The simulator, reset to its seeded world for this test."""
    _simulator_server.control("reset")
    return _simulator_server


@pytest.fixture
def sim_app(make_app, simulator):
    """The app pointed at the simulator for both WeChat APIs."""
    return make_app(WEIXIN_MP_API_BASE=simulator.mp_base, WEIXIN_QY_API_BASE=simulator.qy_base)
