"""The process state: one owner of what a process holds, started by serving, closed by shutdown."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from tests.crash_support import free_port, wait_for
from webapp import runtime
from webapp.delivery import claims
from webapp.heartbeat import KEY as HEARTBEAT_KEY
from webapp.models import AppState

ROOT = Path(__file__).resolve().parent.parent


def _env(database_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(FLASK_DATABASE_URL=database_url, FLASK_SECRET_KEY="runtime-test", FLASK_SCHEDULER_ENABLED="true",
               FLASK_SCHEDULER_HEARTBEAT_SECONDS="1", **extra)
    return env


def _heartbeat_written(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(AppState.key).where(AppState.key == HEARTBEAT_KEY)).first() is not None
    finally:
        engine.dispose()


def test_commands_start_no_scheduler_and_a_served_request_starts_one(tmp_path):
    database_url = f"sqlite:///{tmp_path / 'runtime.sqlite3'}"
    env = _env(database_url)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    assert subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, capture_output=True, timeout=60).returncode == 0
    created = subprocess.run([*flask, "create-user", "ops", "--password", "amber-cloud-9"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    assert not _heartbeat_written(database_url), "a command started a scheduler"

    port = free_port()
    server = subprocess.Popen([*flask, "run", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _listening(port), 30, 0.1, "the server to listen")
        time.sleep(1.5)  # a scheduler started at import would have beaten by now
        assert not _heartbeat_written(database_url), "the scheduler started before the process served a request"
        health = requests.get(base + "/healthz", timeout=10).json()
        assert health["scheduler"]["in_process"] is True and health["scheduler"]["state"] == "running", health
        wait_for(lambda: _heartbeat_written(database_url), 10, 0.1, "the in-process scheduler's first beat")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _listening(port: int) -> bool:
    """Whether the port accepts connections (without sending a request: any request starts the scheduler)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_the_delivery_pool_is_made_once_however_many_threads_ask(app):
    process = runtime.state(app)
    seen, barrier = [], threading.Barrier(16)

    def ask():
        barrier.wait()
        seen.append(process.delivery_pool)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(pool) for pool in seen}) == 1


def test_shutdown_closes_the_pool_stops_the_renewer_and_the_scheduler(make_app):
    from webapp.jobs import build_scheduler

    app = make_app()
    process = runtime.state(app)
    pool = process.delivery_pool
    assert pool.submit(lambda: 41 + 1).result(timeout=5) == 42
    registry = claims.registry(app)
    token = registry.open()
    assert registry.renewing
    process.scheduler = build_scheduler(app)
    process.scheduler.start()

    process.shutdown()

    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    with pytest.raises(RuntimeError):
        process.delivery_pool  # noqa: B018  (a shut-down state makes no new pool)
    assert process.scheduler.running is False and process.scheduler_state == "stopped"
    wait_for(lambda: not registry.renewing, 5, 0.05, "the renewer to stop")
    registry.let_go(token)
    process.shutdown()  # a second shutdown does nothing


def test_a_new_pool_size_takes_effect_with_the_next_pool(app):
    process = runtime.state(app)
    first = process.delivery_pool
    app.config["DELIVERY_POOL_SIZE"] = 3
    second = process.delivery_pool
    assert second is not first and process.delivery_pool is second
    together = threading.Barrier(3, timeout=5)  # breaks (BrokenBarrierError) unless 3 threads run at once
    assert [f.result(timeout=10) for f in [second.submit(together.wait) for _ in range(3)]] is not None
