"""Outbound HTTP plumbing shared by the WeChat clients: pooled sessions, timeouts and redaction.

Every URL of the WeChat API carries an access token in its query string, and token requests carry
the AppSecret/corpsecret, so nothing here logs a full URL, and every string that may reach a log or an
exception goes through :func:`redact` first.
"""
from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_POOL_SIZE",
    "TimeoutSession",
    "make_session",
    "shared_session",
    "redact",
    "loggable_url",
    "logger",
    "RedactingFilter",
    "install_log_redaction",
]

#: (connect, read) seconds; WeChat normally answers in well under a second.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 10.0)
#: Connections kept per host; the delivery engine fans out to many openids at once.
DEFAULT_POOL_SIZE = 32

logger = logging.getLogger("webapp.wechat")

_MASK = "***"

# Names whose values are secret: anything ending in secret, token (access, refresh, the callback
# Token) or AES key.
_SECRET_NAME = r"[A-Za-z0-9_]*?(?:secret|token|aes_?key)"

# name=value in query strings and form bodies (value stops at a separator).
_QUERY_RE = re.compile(r"(?i)(\b" + _SECRET_NAME + r")=([^&\s\"'#,;]+)")
# "name": "value" (JSON) and 'name': 'value' (Python reprs), escaped quotes included.
_JSON_DQ_RE = re.compile(r'(?i)("' + _SECRET_NAME + r'"\s*:\s*)"(?:[^"\\]|\\.)*"')
_JSON_SQ_RE = re.compile(r"(?i)('" + _SECRET_NAME + r"'\s*:\s*)'(?:[^'\\]|\\.)*'")


def redact(text) -> str:
    """Return ``text`` with the values of access_token, secret, corpsecret and the like masked."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    text = _QUERY_RE.sub(lambda m: f"{m.group(1)}={_MASK}", text)
    text = _JSON_DQ_RE.sub(lambda m: f'{m.group(1)}"{_MASK}"', text)
    text = _JSON_SQ_RE.sub(lambda m: f"{m.group(1)}'{_MASK}'", text)
    return text


def loggable_url(url: str) -> str:
    """Return host and path of ``url`` for logs; the query string (with the token) is dropped."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else redact(parts.path)


class RedactingFilter(logging.Filter):
    """Logging filter that masks tokens and secrets in a record before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redact it, and drop the arguments it was built from."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to our logger and to urllib3's, which logs request URLs."""
    for name in ("webapp.wechat", "urllib3.connectionpool"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())


# urllib3 logs "GET /cgi-bin/...?access_token=..." at DEBUG; mask it even if someone turns DEBUG on.
install_log_redaction()


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that applies a default timeout to every call that names none."""

    def __init__(self, timeout=DEFAULT_TIMEOUT):
        super().__init__()
        self.default_timeout = timeout
        self._environment: dict[tuple, dict] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        """requests' proxy and CA bundle settings from the environment, worked out once per host.

        requests looks them up on every call (every proxy variable, then ``no_proxy`` against the
        host); the environment of a running process does not change, and a delivery run makes
        thousands of calls to one host.
        """
        if not self.trust_env or proxies:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        with self._environment_lock:
            found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, {}, stream, verify, cert)
            with self._environment_lock:
                self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}

    def request(self, method, url, **kwargs):
        """Send the request, filling in the default timeout; requests itself has none."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, **kwargs)


def make_session(pool_size: int = DEFAULT_POOL_SIZE, timeout=DEFAULT_TIMEOUT) -> TimeoutSession:
    """Create a session with a connection pool of ``pool_size``, a default timeout and TLS verified."""
    if pool_size < 1:
        raise ValueError("pool_size must be at least 1")
    session = TimeoutSession(timeout=timeout)
    # No automatic retries: the delivery engine decides what to retry, with WeChat's dedupe ids.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = True
    session.headers["User-Agent"] = "webapp-wechat/1"
    return session


_shared: TimeoutSession | None = None
_shared_lock = threading.Lock()


def shared_session() -> TimeoutSession:
    """Return the process-wide session, created on first use, so all clients share one pool."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = make_session()
    return _shared
