"""Shared pieces of the benchmarks: a temporary instance, a gunicorn server, a keep-alive load generator."""
from __future__ import annotations

import contextlib
import http.client
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def machine() -> str:
    """A one-line description of the machine the figures come from."""
    mem = ""
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as handle:
            mem = f", {int(handle.readline().split()[1]) // 1024 // 1024} GiB"
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def instance(database_url: str | None = None, **env):
    """Environment for a throwaway installation: its own database, secret key and no scheduler."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        values = {
            "FLASK_DATABASE_URL": database_url or f"sqlite:///{folder}/bench.sqlite3",
            "FLASK_SECRET_KEY": "bench-secret-key",
            "FLASK_SCHEDULER_ENABLED": "false",
        }
        values.update({k: str(v) for k, v in env.items()})
        full = {**os.environ, **values}
        subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, env=full, check=True,
                       stdout=subprocess.DEVNULL)
        yield full


@contextlib.contextmanager
def gunicorn(env: dict, module: str = "bench.bench_wsgi:app", workers: int = 2, threads: int = 4):
    """Serve ``module`` with gunicorn on a free port; yield its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning", module],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def hammer(base: str, requests_: list[tuple[str, str, bytes]], concurrency: int = 8) -> dict:
    """Send prepared (method, path, body) requests over keep-alive connections; return timing figures."""
    host = urlsplit(base)
    queue = list(reversed(requests_))
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    def worker():
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        while True:
            with lock:
                if not queue:
                    break
                method, path, body = queue.pop()
            started = time.perf_counter()
            connection.request(method, path, body=body, headers={"Content-Type": "text/xml"})
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            with lock:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                latencies.append(elapsed)
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(requests_),
        "seconds": round(wall, 3),
        "per_second": round(len(requests_) / wall, 1),
        "median_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2),
        "statuses": statuses,
    }
