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


def run_threads(worker, count: int) -> float:
    """Run ``worker`` in ``count`` threads at once; return the wall-clock seconds until all end."""
    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started

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
    with gunicorn_process(env, module, workers, threads) as (base, _process):
        yield base


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

    wall = run_threads(worker, concurrency)
    latencies.sort()
    return {
        "requests": len(requests_),
        "seconds": round(wall, 3),
        "per_second": round(len(requests_) / wall, 1),
        "median_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
        "statuses": statuses,
    }


# --- helpers added for the send benchmarks (fanout, wecom_batching, api_overhead, memory) ---------

#: The benchmarks' own gunicorn settings (see that file for why not the project's gunicorn.conf.py).
BENCH_GUNICORN_CONF = ROOT / "bench" / "gunicorn_conf.py"


@contextlib.contextmanager
def gunicorn_process(env: dict, module: str = "wsgi:app", workers: int = 1, threads: int = 4,
                     config: Path | None = BENCH_GUNICORN_CONF):
    """Like :func:`gunicorn`, but yield ``(base_url, master_process)`` so that workers can be inspected.

    ``config`` is the gunicorn settings file; ``None`` lets gunicorn read the project's production
    ``gunicorn.conf.py``, with the workers, threads and address of this call still winning over it.
    """
    port = free_port()
    settings = ["--config", str(config)] if config is not None else []
    process = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", *settings, "--workers", str(workers), "--threads", str(threads),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", module],
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
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (a gunicorn master's workers)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                children += [int(p) for p in handle.read().split()]
    return sorted(set(children))


def memory_mb(pid: int) -> dict:
    """Resident memory of process ``pid`` from /proc/<pid>/status: VmRSS now and VmHWM (its peak), in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return {"rss_mb": values.get("VmRSS"), "peak_rss_mb": values.get("VmHWM")}


def summary(latencies: list[float]) -> dict:
    """Median, p95, mean and max of latencies given in seconds, in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "median_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2),
        "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: other work on the shared cores skews the figures."""
    return [round(value, 2) for value in os.getloadavg()]
