"""Production settings for gunicorn: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be changed from the environment (``GUNICORN_*`` below), so the systemd unit and
its environment file are the only places an operator edits. docs/deployment.md explains the choices.

Three things this file does besides gunicorn settings:

* The web workers do not run the background jobs: ``FLASK_SCHEDULER_ENABLED`` defaults to
  ``false`` here, because every worker would otherwise start its own scheduler. The jobs run in one
  process of their own, ``flask --app wsgi scheduler`` (deploy/systemd/weixin-notify-scheduler.service).
  Setting ``FLASK_SCHEDULER_ENABLED=true`` explicitly in the environment still wins (one worker, no
  scheduler unit: the small single-process set-up).
* It refuses to start several workers for an app that serves the built-in WeChat simulator (the
  service with ``FLASK_WEIXIN_SIMULATOR=true``, or the standalone simulator): its state is in one
  process's memory, so each worker would have a simulator of its own. The sentence says to run the
  simulator as one process of its own (``make simulator``) or to use one worker.
* The workers keep their Prometheus metrics in files of a shared folder (``PROMETHEUS_MULTIPROC_DIR``),
  so that ``/metrics`` answers for the whole server and not for whichever worker took the request.
  This is on whatever the number of workers: that number can change after this file is read
  (``--workers`` on the command line, ``gunicornc``, TTIN/TTOU signals), and even one worker is
  replaced every ``max_requests`` requests, which would otherwise reset its counters each time.
"""
from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    """An integer setting from the environment, with a message naming the variable when it is not one."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a whole number; fix it in the environment file") from None


def _default_workers() -> int:
    """One process per core plus one, at most four.

    Requests spend most of their time waiting for WeChat or the database, and each worker serves
    ``threads`` of them at once, so more processes only buy CPU parallelism: one per core, plus one so
    that a worker being recycled (``max_requests``) never halves the capacity of a small machine. The
    cap keeps the PostgreSQL connections of one host at 4 x (DATABASE_POOL_SIZE 5 + MAX_OVERFLOW 10)
    = 60, plus 15 for the scheduler: under PostgreSQL's default max_connections of 100.
    """
    return min((os.cpu_count() or 1) + 1, 4)


# --- where and how many ---------------------------------------------------------------------------
# Loopback by default: nginx on the same host is the only client. Another host's proxy needs
# GUNICORN_BIND=0.0.0.0:8000 (and GUNICORN_FORWARDED_ALLOW_IPS naming that proxy).
bind = [address.strip() for address in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",") if address.strip()]
workers = _int("GUNICORN_WORKERS", _default_workers())
# Threads, because delivery and token calls wait on the network: four requests per worker in flight
# while the GIL is free. The delivery engine's own pool (DELIVERY_POOL_SIZE) fans out inside a request.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)

# --- time limits ----------------------------------------------------------------------------------
# A send call may legitimately wait DELIVERY_TIME_BUDGET (10 s) for WeChat before answering
# "queued"; the worker timeout must stay well above that so a busy worker is never killed mid-send.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On stop or reload, requests in flight get this long to finish (again above the 10 s budget).
# The systemd unit's TimeoutStopSec is larger still, so gunicorn, not systemd, ends them.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# nginx keeps connections to us short; a little keep-alive saves a TCP handshake per request.
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# --- recycling ------------------------------------------------------------------------------------
# Workers are replaced after a number of requests, with jitter so they do not all restart at once.
# Memory stays flat in the benchmarks; this bounds the cost of any leak a dependency may bring.
# A queued delivery a recycled worker was handling is taken again by the scheduler (claims expire).
max_requests = _int("GUNICORN_MAX_REQUESTS", 2000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 200)
# Each worker builds its own app (and database engine): forking after connections are open would
# share sockets between processes.
preload_app = False

# --- the reverse proxy ----------------------------------------------------------------------------
# gunicorn trusts X-Forwarded-Proto only from these addresses. The application itself reads the
# X-Forwarded-* headers through FLASK_PROXY_COUNT (werkzeug's ProxyFix); both must agree that nginx
# is in front.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# --- logs -----------------------------------------------------------------------------------------
# The application writes its own access lines (with request ids), so gunicorn's are off unless asked
# for (GUNICORN_ACCESSLOG=- for stderr). Errors go to stderr, which systemd hands to the journal.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = os.environ.get("GUNICORN_ERRORLOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
proc_name = "weixin-notify"

# --- runtime files --------------------------------------------------------------------------------
# systemd's RuntimeDirectory= gives a private tmpfs folder (/run/weixin-notify) that is emptied
# whenever the service stops: the right place for files that must not outlive this server.
_runtime_dir = (os.environ.get("RUNTIME_DIRECTORY") or "").split(":")[0]
_project_dir = os.path.dirname(os.path.abspath(__file__))
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which two
# servers of the same user would fight over; use the runtime folder, or none at all.
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
elif _runtime_dir:
    control_socket = os.path.join(_runtime_dir, "gunicorn.ctl")
else:
    control_socket_disable = True

# --- the application's environment (read by each worker's create_app) ------------------------------
os.environ.setdefault("FLASK_SCHEDULER_ENABLED", "false")

# Metric files from a previous run must not be counted again: under systemd the folder is on the
# runtime tmpfs; elsewhere it is in instance/, and on_starting() below empties it at every start.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(_runtime_dir, "prometheus") if _runtime_dir else os.path.join(_project_dir, "instance", "prometheus"),
)


def _simulator_refusal(server, workers: int) -> str | None:
    """Why ``workers`` processes must not serve this app: the WeChat simulator lives in one process's memory."""
    from webapp.simulator import processes

    app_uri = getattr(server.app, "app_uri", None) or server.cfg.wsgi_app
    return processes.refusal(workers, app_uri, os.path.join(_project_dir, "instance"))


def on_starting(server):
    """Before the workers start: refuse to serve the in-process WeChat simulator with several workers
    (each would hold a simulator of its own and it would half-work), then give the Prometheus client
    a clean folder for the workers' metric files."""
    refusal = _simulator_refusal(server, server.cfg.workers)
    if refusal:
        # gunicorn prints a RuntimeError from this hook as "Error: ..." and exits with status 1.
        raise RuntimeError(refusal)
    from webapp import metrics

    metrics.prepare_multiprocess_dir()


def nworkers_changed(server, new_value, old_value):
    """A TTIN signal (or gunicornc) adding workers to a server of the in-process simulator: keep one."""
    if old_value is None or new_value <= old_value:
        return
    refusal = _simulator_refusal(server, new_value)
    if refusal:
        server.log.error("Keeping %s worker: %s", old_value, refusal)
        server.num_workers = old_value


def child_exit(server, worker):
    """When a worker ends: let the Prometheus client drop the gauges of that process."""
    from webapp import metrics

    metrics.worker_exited(worker.pid)
