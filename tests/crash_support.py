"""The service as a separate process that a test can ``kill -9`` and start again on the same database.

Used by ``tests/test_crash.py``. The service is installed the way an operator installs it
(``flask --app wsgi init-db``, ``create-api-app``, ``weixin-config --no-check``) and served by
gunicorn (one worker, in-process scheduler) in its own process group, so that a SIGKILL to the
group takes the master and the worker down at once, in the middle of whatever they were doing.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY = "crash-test-secret-key-not-for-production"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def postgres_schema(postgres_url: str):
    """A fresh, empty PostgreSQL schema; yields a URL whose connections use it (dropped afterwards)."""
    schema = "crash_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Installation:
    """One installation of the service: its environment and database; serves it as a process."""

    def __init__(self, database_url: str, simulator_base: str, log_dir: Path, **settings):
        self.database_url = database_url
        self.log_dir = log_dir
        values = {
            "FLASK_DATABASE_URL": database_url,
            "FLASK_SECRET_KEY": SECRET_KEY,
            "FLASK_WEIXIN_MP_API_BASE": simulator_base + "/simulator/mp",
            "FLASK_WEIXIN_QY_API_BASE": simulator_base + "/simulator/qy",
            "FLASK_WEIXIN_SIMULATOR": "false",
            "FLASK_SCHEDULER_ENABLED": "true",
        }
        values.update({f"FLASK_{key}": str(value) for key, value in settings.items()})
        self.env = {**os.environ, **values}
        self.env.pop("FLASK_APP", None)
        self.process: subprocess.Popen | None = None
        self.base: str | None = None
        self.starts = 0
        self.engine = create_engine(database_url)

    # --- installing ------------------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        """Run ``flask --app wsgi ARGS`` with this installation's environment; return its stdout."""
        done = subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def install(self, channel: dict, app_code: str = "crash_test") -> str:
        """Create the schema, register a calling application and load the channel; return the app's secret."""
        self.cli("init-db")
        secret = self.cli("create-api-app", app_code, "--rate-limit", "100000").strip().splitlines()[-1]
        config = self.log_dir / "channel.json"
        config.write_text(json.dumps(channel))
        self.cli("weixin-config", str(config), "--no-check")
        return secret

    # --- serving ---------------------------------------------------------------------------------

    def start(self, workers: int = 1, threads: int = 8) -> str:
        """Serve with gunicorn in a new process group; return its base URL.

        By default one worker with its scheduler running; with ``SCHEDULER_ENABLED=False`` among the
        settings the workers run no scheduler (``/healthz`` then says ``external``).
        """
        assert self.process is None, "already running"
        port = free_port()
        self.starts += 1
        log = open(self.log_dir / f"service-{self.starts}.log", "wb")
        # An empty configuration file: a gunicorn.conf.py in the project folder (production settings)
        # must not change how the tests serve.
        config = self.log_dir / "gunicorn-test.conf.py"
        config.write_text("")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "--config", str(config), "--workers", str(workers), "--threads", str(threads),
             "--bind", f"127.0.0.1:{port}", "--timeout", "120", "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self.base = f"http://127.0.0.1:{port}"
        scheduler = "running" if self.env["FLASK_SCHEDULER_ENABLED"].lower() == "true" else "external"

        def healthy():
            assert self.process.poll() is None, f"the service exited:\n{self.log()}"
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(self.base + "/healthz", timeout=2)
                return answer.status_code == 200 and answer.json()["scheduler"]["state"] == scheduler
            return False

        wait_for(healthy, 60, 0.05, f"the service to answer /healthz with its scheduler {scheduler}")
        return self.base

    def kill(self) -> None:
        """``kill -9`` the whole process group (gunicorn master and worker) and reap it."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()
        self.engine.dispose()

    def log(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("service-*.log")):
            parts.append(f"--- {path.name} ---\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    # --- looking into the database ---------------------------------------------------------------

    def statuses(self) -> dict[str, int]:
        """Delivery rows per status, e.g. ``{"sent": 40, "queued": 20}``."""
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM deliveries GROUP BY status")).all()
        return {status: count for status, count in rows}

    def messages_stored(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT COUNT(*) FROM messages")).scalar()

    def deliveries(self) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT d.receiver, d.status, d.attempts, d.errcode, d.errmsg, m.body "
                                     "FROM deliveries d JOIN messages m ON m.id = d.message_id ORDER BY d.id")).mappings()
            return [dict(row) for row in rows]


# --- fixtures shared by the tests that run the service as processes (import them by name) ----------

@pytest.fixture(scope="module")
def wechat():
    """The simulated WeChat over HTTP in this process (it outlives the service): ``(base_url, world)``."""
    from tests.livesrv import serve
    from webapp.simulator import create_standalone_app, get_world

    sim_app = create_standalone_app()
    with serve(sim_app) as base:
        yield base, get_world(sim_app)


@pytest.fixture
def world(wechat):
    """The simulated WeChat's World, back to its seed for this test."""
    world = wechat[1]
    world.reset()
    return world


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A database URL for the service process: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.sqlite3'}"
    else:
        with postgres_schema(request.getfixturevalue("postgres_url")) as url:
            yield url
