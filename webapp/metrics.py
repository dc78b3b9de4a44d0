"""Prometheus metrics, served at ``/metrics`` to the addresses and token the operator allows.

Counters and histograms live in the Prometheus client's default registry. Under gunicorn with
several workers each worker counts only what it served, so when ``PROMETHEUS_MULTIPROC_DIR`` is set
the client keeps the values in files in that folder, and a scrape adds up the files of every worker
(the client's standard multiprocess mode). The gunicorn configuration prepares the folder
(:func:`prepare_multiprocess_dir`) and reports dead workers (:func:`worker_exited`).

What lives in the database — the delivery queue, the scheduler's heartbeat — is read at scrape time
by :class:`DatabaseCollector`, so every worker and every host reports the same, true figures.
"""
from __future__ import annotations

import functools
import glob
import hmac
import ipaddress
import logging
import os
import time

from flask import Flask, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from webapp import heartbeat
from webapp.extensions import db
from webapp.models import Delivery, utcnow

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Methods the service answers; anything else is counted as "other" so that a client cannot create
#: a new time series per invented method.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

DELIVERIES = Counter(
    "weixin_deliveries", "Delivery attempts finished, by channel, outcome and WeChat errcode.",
    ["channel", "status", "errcode"])
TOKEN_FETCHES = Counter(
    "weixin_token_fetches", "Access token fetches from WeChat (successful or not), by channel.", ["channel"])
TOKEN_FETCH_FAILURES = Counter(
    "weixin_token_fetch_failures", "Access token fetches that failed, by channel and WeChat errcode.",
    ["channel", "errcode"])
CALLBACKS = Counter(
    "weixin_callback_requests", "Requests to the WeChat callback URL, by method and outcome.", ["method", "outcome"])
QY_CALLBACKS = Counter(
    "weixin_qy_callback_requests", "Requests to the WeCom application's callback URL, by method and outcome.",
    ["method", "outcome"])
QY_EVENTS = Counter(
    "weixin_qy_callback_events", "Messages and events the WeCom application's callback accepted, by kind.", ["kind"])
MESSAGES = Counter(
    "weixin_messages", "Messages accepted, by source (api, alertmanager, grafana, wizard).", ["source"])
REPEATED_REQUESTS = Counter(
    "weixin_repeated_requests", "Requests answered with an earlier message and not sent again (the same "
    "Idempotency-Key, or a webhook notification delivered again), by source.", ["source"])
API_AUTH_REFUSED = Counter(
    "weixin_api_auth_refused", "Send API calls refused for their credentials: wrong_credentials (401, counted "
    "towards throttling) or throttled (429, too many failures for the application code or the address).",
    ["outcome"])
HTTP_DURATION = Histogram(
    "weixin_http_request_duration_seconds", "Time to answer HTTP requests, by Flask endpoint, method and status class.",
    ["endpoint", "method", "status_class"],
    # Up to the send API's 10 s time budget and beyond it.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0))

#: Labels of DELIVERIES' ``status``: the row's status after the attempt, with "queued" (a transient
#: failure, tried again later) called what it is.
_DELIVERY_STATUS = {"sent": "sent", "failed": "failed", "queued": "retrying"}


def init_app(app: Flask) -> None:
    """Check the access settings and time every request (``/metrics`` itself is :mod:`webapp.ops.routes`)."""
    parse_networks(app.config.get("METRICS_ALLOW_FROM"))  # a wrong setting stops the start, with its reason
    directory = multiprocess_dir()
    if directory:
        # The client writes its files there from the first counted event; `flask run` has no
        # on_starting hook to create the folder.
        os.makedirs(directory, exist_ok=True)
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)


# --- gunicorn hooks -------------------------------------------------------------------------------

def multiprocess_dir() -> str | None:
    """The folder of the multiprocess mode, or None when each process keeps its own metrics."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir() -> None:
    """gunicorn's ``on_starting``: create the multiprocess folder and empty it of a previous run's files.

    Files left by an earlier server would be added to the new server's counters. Does nothing
    without ``PROMETHEUS_MULTIPROC_DIR``.
    """
    directory = multiprocess_dir()
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def serve_process_metrics(address: str) -> str:
    """Serve this process's own counters on ``HOST:PORT`` in a background thread; return the address bound.

    For the standalone scheduler, whose deliveries and token refreshes no web worker sees. The
    database gauges are left out: every ``/metrics`` of the web workers already reports them.
    Raise ValueError for a malformed address, OSError when it cannot be bound.
    """
    from prometheus_client import start_http_server

    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9101")
    host = host.strip("[]")  # "[::1]:9101"
    # The default registry holds this process's own values, also in multiprocess mode (a registry
    # reading the whole folder would add up the web workers of the host as well).
    server, _thread = start_http_server(int(port), addr=host, registry=REGISTRY)
    bound_host, bound_port = server.server_address[:2]
    return f"{bound_host}:{bound_port}"


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: tell the client that worker ``pid`` is gone (no-op outside multiprocess mode)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


# --- counting -------------------------------------------------------------------------------------

def _errcode_label(exc: Exception | None) -> str:
    """WeChat's errcode as a label; "none" when WeChat gave none (network failure, timeout)."""
    errcode = getattr(exc, "errcode", None)
    return "none" if errcode is None else str(errcode)


def deliveries_finished(channel: str, outcome: dict, count: int = 1) -> None:
    """Count ``count`` deliveries whose attempt ended with ``outcome`` (the engine's row update)."""
    status = _DELIVERY_STATUS.get(outcome.get("status"), str(outcome.get("status")))
    errcode = outcome.get("errcode")
    label = "0" if status == "sent" else ("none" if errcode is None else str(errcode))
    DELIVERIES.labels(channel=channel, status=status, errcode=label).inc(count)


def message_accepted(source: str) -> None:
    """Count one message stored for delivery, by where it came from."""
    MESSAGES.labels(source=source).inc()


def request_repeated(source: str) -> None:
    """Count one request answered with the message an identical earlier request made."""
    REPEATED_REQUESTS.labels(source=source).inc()


def deliveries_refused(channel: str, reason: str, count: int = 1) -> None:
    """Count ``count`` deliveries failed before WeChat was called; ``reason`` (``not_bound``,
    ``invalid_id``...) takes the place of WeChat's errcode, so that alerts on failures see them."""
    DELIVERIES.labels(channel=channel, status="failed", errcode=reason).inc(count)


def api_auth_refused(outcome: str) -> None:
    """Count one send API call refused for its credentials (``wrong_credentials`` or ``throttled``)."""
    API_AUTH_REFUSED.labels(outcome=outcome).inc()


def token_fetch(channel: str, failure: Exception | None) -> None:
    """Count one access token fetch from WeChat, and its failure when it failed."""
    TOKEN_FETCHES.labels(channel=channel).inc()
    if failure is not None:
        TOKEN_FETCH_FAILURES.labels(channel=channel, errcode=_errcode_label(failure)).inc()


def callback_request(method: str, outcome: str, channel: str = "mp") -> None:
    """Count one callback request and how it ended (``ok``, ``bad_signature``, ``replayed_nonce``...);
    ``channel`` "qywx" counts it for the WeCom application's callback."""
    (QY_CALLBACKS if channel == "qywx" else CALLBACKS).labels(method=method, outcome=outcome).inc()


def qy_callback_event(kind: str) -> None:
    """Count one message or event the WeCom callback accepted (``kind`` from a fixed set, see
    ``webapp.callback.qy_services.event_kind``)."""
    QY_EVENTS.labels(kind=kind).inc()


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


#: HTTP_DURATION's child per label values, so that a request costs a dictionary lookup, not a
#: label check (the set is small: endpoints x methods x status classes).
_duration_children: dict[tuple[str, str, str], object] = {}


def _observe(response):
    started = g.get("metrics_started")
    if started is not None:
        # The endpoint name, never the path: paths hold ids and tokens, and every 404 would add a series.
        key = (request.endpoint or "none", request.method if request.method in METHODS else "other",
               f"{response.status_code // 100}xx")
        child = _duration_children.get(key)
        if child is None:
            child = _duration_children[key] = HTTP_DURATION.labels(*key)
        child.observe(time.perf_counter() - started)
    return response


# --- who may read them ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _allowed_networks(value: str | tuple | None) -> tuple:
    return tuple(parse_networks(value))


def parse_networks(value) -> list:
    """``METRICS_ALLOW_FROM`` as networks: a list of CIDRs, or one string of them separated by commas or spaces."""
    if value is None:
        return []
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    try:
        return [ipaddress.ip_network(str(item).strip(), strict=False) for item in items if str(item).strip()]
    except ValueError as exc:
        raise ValueError(f"METRICS_ALLOW_FROM holds an invalid address or network: {exc}") from None


def scrape_allowed() -> bool:
    """Whether this request may read the metrics: its address is allowed, or it carries METRICS_TOKEN."""
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), str(token).encode()):
            return True
    return address_allowed(request.remote_addr)


def address_allowed(address: str | None) -> bool:
    """Whether ``address`` lies in one of the METRICS_ALLOW_FROM networks."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # "::ffff:127.0.0.1" on dual-stack sockets
    setting = current_app.config.get("METRICS_ALLOW_FROM")
    networks = _allowed_networks(tuple(setting) if isinstance(setting, list) else setting)
    return any(ip in network for network in networks)


# --- the answer -----------------------------------------------------------------------------------

def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format the scraper asked for (Prometheus text by default) and its content type."""
    if multiprocess_dir():
        # The standard multiprocess set-up: a fresh registry that reads every worker's files.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Together(registry, DatabaseCollector())), content_type


class _Together:
    """Several collectors read as one registry (the exposition functions only call ``collect()``)."""

    def __init__(self, *collectors) -> None:
        self.collectors = collectors

    def collect(self):
        """Every metric of every collector."""
        for collector in self.collectors:
            yield from collector.collect()


class DatabaseCollector:
    """Figures read from the database at scrape time: the delivery queue and the scheduler's heartbeat."""

    def collect(self):
        """Yield the gauges; ``weixin_database_up`` is 0 (and the rest left out) when the database does not answer."""
        up = GaugeMetricFamily("weixin_database_up", "1 when the database answered this scrape, else 0.")
        state = case((Delivery.attempts > 0, "retrying"), else_="queued").label("state")
        try:
            with db.engine.connect() as connection:
                rows = connection.execute(
                    select(state, func.count(), func.min(Delivery.created_at))
                    .where(Delivery.status == "queued").group_by(state)
                ).all()
            beat_age = heartbeat.age()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = utcnow()
        depth = GaugeMetricFamily("weixin_queue_deliveries",
                                  "Deliveries waiting to be sent: queued (never tried) or retrying (tried, failed transiently).",
                                  labels=["state"])
        counts = {"queued": 0, "retrying": 0}
        oldest = None
        for name, count, created_at in rows:
            counts[name] = count
            if created_at is not None and (oldest is None or created_at < oldest):
                oldest = created_at
        for name, count in counts.items():
            depth.add_metric([name], count)
        yield depth
        age = GaugeMetricFamily("weixin_queue_oldest_age_seconds",
                                "Age of the oldest delivery still waiting to be sent (0 when none waits).")
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield age
        beat = GaugeMetricFamily("weixin_scheduler_heartbeat_age_seconds",
                                 "Seconds since a scheduler last wrote its heartbeat (absent when none ever did).")
        if beat_age is not None:
            beat.add_metric([], beat_age)
        yield beat
