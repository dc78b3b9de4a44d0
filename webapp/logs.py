"""Logs for operators: one line per record on stderr, each tagged with the request (or job) it belongs to.

Every request gets an id: the caller's ``X-Request-Id`` when it is a sane token, otherwise a new one.
It is kept in ``flask.g.request_id``, sent back in the ``X-Request-Id`` answer header, and added to
every record logged while the request runs, so that one grep finds everything a request caused.
Scheduler jobs log with their job id instead, and anything else with ``-``.

``LOG_FORMAT`` chooses between ``text`` (for people) and ``json`` (one object per line, for log
shippers); ``LOG_LEVEL`` sets the level of the service's own loggers (``webapp.*``).

Each access line names the client's address as the service resolved it: behind ``PROXY_COUNT``
trusted proxies it is the address they report (ProxyFix), never an ``X-Forwarded-For`` entry the
client wrote itself.

No query string is ever logged: the callback's carries signatures and nonces, the bind flow's a login
code, and a caller may put its application secret there.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Iterator, TypeVar

from flask import Flask, Response, g, has_request_context, request

#: An incoming request id is kept only when it looks like one. This module is the one place that
#: chooses the id: the send API puts :func:`current_id` in the ``request_id`` of its answers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HEADER = "X-Request-Id"
T = TypeVar("T")
NO_REQUEST = "-"
FORMATS = ("text", "json")
#: The logger of the per-request access lines.
access_log = logging.getLogger("webapp.access")

# The job (or other background task) the current thread works for; "-" outside of one.
_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("webapp_task_id", default=NO_REQUEST)

#: Fields of an access line that the JSON format writes as keys of their own.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client")


def init_app(app: Flask) -> None:
    """Install the stderr handler with the configured format, and the request id and access line hooks."""
    fmt = str(app.config.get("LOG_FORMAT") or "text").strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    level = str(app.config.get("LOG_LEVEL") or "INFO").strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    configure(fmt, level)
    # Flask gives its logger a handler of its own when it finds none; ours on the root logger is the
    # one and only, or every line would be written twice.
    from flask.logging import default_handler

    app.logger.removeHandler(default_handler)
    # First in line: the guards that run before the view (set-up, NUL refusal) may log or answer,
    # and their lines and answers must carry the id too. Access lines are written last.
    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)
    app.after_request_funcs.setdefault(None, []).insert(0, finish_request)


def configure(fmt: str = "text", level: str = "INFO") -> None:
    """Send log records to stderr in ``fmt``; the service's loggers (``webapp.*``) log from ``level`` up.

    Calling it again (tests build many apps) replaces the handler instead of adding a second one.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "webapp_handler", False)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.webapp_handler = True
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    logging.getLogger("webapp").setLevel(level)
    # werkzeug's development server (flask run) writes its own access line, query string included;
    # ours replaces it.
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropWerkzeugAccessLines) for f in werkzeug.filters):
        werkzeug.addFilter(DropWerkzeugAccessLines())


class StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted.

    Test runners and daemon managers swap ``sys.stderr``; a stream bound at start-up could be closed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # always the current sys.stderr


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record: the request's id, the job's, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record (keeping an id a caller passed explicitly in ``extra``)."""
        if not hasattr(record, "request_id"):
            record.request_id = current_id()
        return True


class DropWerkzeugAccessLines(logging.Filter):
    """Drops the development server's per-request line (it logs the full URL, query string included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep everything but the ``"GET /path?query HTTP/1.1" 200 -`` lines."""
        return not (record.levelno == logging.INFO and isinstance(record.msg, str)
                    and record.msg.rstrip().endswith('"%s" %s %s'))


class TextFormatter(logging.Formatter):
    """``2026-11-28 14:51:08,123 INFO [request id] logger: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (and the access line's fields)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON (an exception's traceback in ``exception``)."""
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", NO_REQUEST),
        }
        for key in ACCESS_FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def current_id() -> str:
    """The id of what this thread works for: the request's, the job's, or ``-``."""
    if has_request_context():
        return g.get("request_id", NO_REQUEST)
    return _task_id.get()


@contextlib.contextmanager
def task_context(task_id: str) -> Iterator[None]:
    """Tag the records logged inside the block with ``task_id`` (a scheduler job's id)."""
    token = _task_id.set(task_id)
    try:
        yield
    finally:
        _task_id.reset(token)


def carry(func: Callable[..., T]) -> Callable[..., T]:
    """``func`` made to log, in whichever thread it runs, with the id of what calls ``carry`` now.

    For work handed to a thread pool: the delivery engine's WeChat calls are logged with the id of
    the send request (or the retry job) they belong to.
    """
    task_id = current_id()

    def run(*args, **kwargs):
        with task_context(task_id):
            return func(*args, **kwargs)

    return run


def request_id_from(given: str | None) -> str:
    """The caller's id when it is sane (8-64 of letters, digits, ``.``, ``_``, ``-``), else a new one."""
    if given and _SANE_REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def assign_request_id() -> None:
    """Before the request: choose its id and start its clock."""
    g.request_started = time.perf_counter()
    g.request_id = request_id_from(request.headers.get(HEADER))


def finish_request(response: Response) -> Response:
    """After the request: echo its id and write its access line (method, path, status, duration, client)."""
    request_id = g.get("request_id") or assign_fallback()
    response.headers[HEADER] = request_id
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    path = loggable_path()
    # remote_addr is what ProxyFix made of the trusted proxies' headers (PROXY_COUNT), or the peer.
    client = request.remote_addr or "-"
    access_log.info("%s %s %s %sms from %s", request.method, path, response.status_code, duration_ms, client,
                    extra={"method": request.method, "path": path, "status": response.status_code,
                           "duration_ms": duration_ms, "client": client})
    return response


def loggable_path() -> str:
    """The request's path for a log line: never the query string, and capability tokens masked.

    A message's detail link (``/m/<token>``) lets whoever holds it read the message.
    """
    path = request.path
    for name, value in (request.view_args or {}).items():
        if "token" in name.lower() and isinstance(value, str) and value:
            path = path.replace(value, "***")
    return path


def assign_fallback() -> str:
    """An id for a request whose before-request hook did not run (another hook answered first)."""
    g.request_id = uuid.uuid4().hex
    return g.request_id
