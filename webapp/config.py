"""Configuration: built-in defaults, then ``instance/config.py``, then ``FLASK_*`` environment variables.

The names and defaults are part of the service's outside contract (see the README's configuration
table). Later sources win, so an operator can keep a config file and still override one value from
the environment.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask

SECRET_KEY_FILE = "secret_key"


class Defaults:
    """Values used when neither ``instance/config.py`` nor the environment sets them."""

    # SECRET_KEY has no default on purpose: see ensure_secret_key().
    DATABASE_URL: str | None = None  # None means an SQLite file in the instance folder
    WEIXIN_MP_API_BASE = "https://api.weixin.qq.com"
    WEIXIN_QY_API_BASE = "https://qyapi.weixin.qq.com"
    WEIXIN_QY_LOGIN_URL = "https://login.work.weixin.qq.com/wwlogin/sso/login"
    PUBLIC_URL: str | None = None  # None means "taken from the request"
    SCHEDULER_ENABLED = True
    WEIXIN_SIMULATOR = False
    # The service's base URL as the simulator sees it, for the simulator run as a process of its own
    # (make simulator): its suggested callback URLs and its WeCom apps' trusted domain. None: the
    # simulator's own address (it is inside the service).
    SIMULATOR_SERVICE_URL: str | None = None
    # The in-app OAuth page the WeCom bind QR code leads to (the simulator has its own).
    WEIXIN_QY_OAUTH_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
    # How long a bind QR code / WeCom login attempt stays valid.
    BIND_QR_EXPIRE_SECONDS = 600

    # Sessions and forms.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = 3600 * 4

    # Failed logins allowed in LOGIN_WINDOW_SECONDS, per user name and per client address.
    LOGIN_MAX_FAILURES_PER_USER = 5
    LOGIN_MAX_FAILURES_PER_ADDRESS = 20
    LOGIN_WINDOW_SECONDS = 15 * 60
    PASSWORD_MIN_LENGTH = 10
    # Failed API authentications (wrong application code or secret) allowed in API_AUTH_WINDOW_SECONDS,
    # per application code and per client address; beyond them calls are answered 429 until the window passes.
    API_AUTH_MAX_FAILURES_PER_APP = 20
    API_AUTH_MAX_FAILURES_PER_ADDRESS = 50
    API_AUTH_WINDOW_SECONDS = 600
    # Session and remember-me cookies are sent over HTTPS only: None means "when PUBLIC_URL is https://";
    # true or false overrides (see webapp/security.py).
    COOKIE_SECURE: bool | None = None

    # Pages are served with our own copies of Bootstrap (from the Bootstrap-Flask package), never a CDN.
    BOOTSTRAP_SERVE_LOCAL = True
    BABEL_DEFAULT_LOCALE = "en"
    BABEL_TRANSLATION_DIRECTORIES = str(Path(__file__).parent / "translations")

    MAX_CONTENT_LENGTH = 1024 * 1024

    # Delivery: concurrent Official Account calls per process, the time a send request waits for
    # WeChat before answering "queued", the retry schedule, and WeCom's duplicate-check window
    # (identical content to the same person within it is delivered once).
    DELIVERY_POOL_SIZE = 64
    DELIVERY_TIME_BUDGET = 10
    DELIVERY_RETRY_BASE_SECONDS = 30
    DELIVERY_RETRY_MAX_SECONDS = 1800
    DELIVERY_MAX_AGE_SECONDS = 24 * 3600
    # The retry job runs this often; it also takes over the deliveries of a process that died.
    DELIVERY_JOB_SECONDS = 5
    # A claim on deliveries lasts this long unless its process renews it (it does so four times per
    # lease while its calls run): a dead process's deliveries are taken over within a lease plus a
    # run of the retry job.
    DELIVERY_CLAIM_LEASE_SECONDS = 8
    WECOM_DUPLICATE_CHECK_SECONDS = 600
    # Seconds to wait for WeChat's answer to one API call (connecting waits at most 5 s of it); a call
    # that times out is retried later with the same duplicate guards.
    WEIXIN_HTTP_TIMEOUT = 10
    # How often the scheduler refreshes access tokens ahead of expiry and purges stale rows.
    TOKEN_JOB_SECONDS = 60
    PURGE_JOB_SECONDS = 600
    # The send API: receivers per request, and the default requests per minute for a new application.
    SEND_MAX_RECEIVERS = 10_000
    DEFAULT_RATE_LIMIT_PER_MINUTE = 600
    # Detail pages of messages that were cut to fit WeChat's limits stay readable this long.
    DETAIL_LINK_MAX_AGE = 30 * 24 * 3600
    # Number of reverse proxies in front of the service whose X-Forwarded-* headers are trusted.
    PROXY_COUNT = 0
    # A PEM file of CA certificates (a company CA) that the set-up wizard's callback self-test trusts
    # besides the public CAs bundled with the service; WeChat itself trusts only public CAs.
    CALLBACK_TEST_CA_BUNDLE: str | None = None
    # Callback requests whose timestamp is further than this from the server's clock are refused.
    CALLBACK_MAX_CLOCK_SKEW = 300
    # Logs on stderr (docs/observability.md): "text" for people or "json" for log shippers, and the
    # level of the service's own loggers.
    LOG_FORMAT = "text"
    LOG_LEVEL = "INFO"
    # Who may read /metrics: clients in these networks (the address as ProxyFix sees it), and anyone
    # sending "Authorization: Bearer <METRICS_TOKEN>" when a token is set.
    METRICS_ALLOW_FROM = ("127.0.0.1/32", "::1/128")
    METRICS_TOKEN: str | None = None
    # A running scheduler writes a heartbeat this often; /healthz calls it stale after the second value.
    SCHEDULER_HEARTBEAT_SECONDS = 15
    SCHEDULER_HEARTBEAT_STALE_SECONDS = 60


def load_config(app: Flask, test_config: dict | None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment and ``test_config``."""
    app.config.from_object(Defaults)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        # FLASK_FOO=value sets FOO; values are parsed as JSON when they can be ("true" -> True).
        app.config.from_prefixed_env()
    else:
        app.config.from_mapping(test_config)
    app.config["SCHEDULER_ENABLED"] = as_bool(app.config["SCHEDULER_ENABLED"])
    app.config["WEIXIN_SIMULATOR"] = as_bool(app.config["WEIXIN_SIMULATOR"])
    for key in ("WEIXIN_MP_API_BASE", "WEIXIN_QY_API_BASE", "PUBLIC_URL"):
        if app.config.get(key):
            app.config[key] = str(app.config[key]).rstrip("/")
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "weixin.sqlite3")
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = ensure_secret_key(Path(app.instance_path))


def as_bool(value) -> bool:
    """Read a boolean the way an operator would write it in the environment."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def ensure_secret_key(instance_path: Path) -> str:
    """Return the secret key kept in ``instance/secret_key``, creating it (mode 0600) the first time.

    Several workers may start at once, so the file must never be seen before it holds the whole key.
    The key is therefore written and fsynced in a temporary file beside it, then published with
    :func:`os.link`, which refuses to replace an existing file: the first process to link wins, the
    others drop their own key and read the winner's. The temporary file is removed in every case.

    An existing file that is empty or unreadable is an operator's mistake (this code never leaves
    one): it is reported with what to do, never replaced, because stored secrets are encrypted with
    a key derived from this one.
    """
    path = instance_path / SECRET_KEY_FILE
    instance_path.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _publish_new_key(path)
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeError(
            f"cannot read the secret key file {path} ({exc}): give the service's user read access to it, "
            "or set FLASK_SECRET_KEY"
        ) from exc
    if not key:
        raise RuntimeError(
            f"{path} is empty: put the service's secret key back in it, or delete it to have a new one "
            "generated (secrets stored with the old key can then no longer be read)"
        )
    return key


def _publish_new_key(path: Path) -> None:
    """Make ``path`` hold a new key unless another process creates it first (then keep theirs)."""
    # mkstemp creates the file with mode 0600 and a name no other process can pick; it sits in the
    # same folder because a hard link cannot cross file systems.
    fd, temporary = tempfile.mkstemp(prefix=".secret_key-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            # On disk before it has its public name: after a power cut the file is whole or absent.
            os.fsync(handle.fileno())
        try:
            # Unlike os.replace, os.link never overwrites: a key another worker already read and
            # used stays the key.
            os.link(temporary, path)
        except FileExistsError:
            return  # another process published its key first: everyone uses that one
        except OSError as exc:
            raise RuntimeError(
                f"cannot create the secret key file {path} ({exc}): write a random key "
                "(python -c 'import secrets; print(secrets.token_hex(32))') into it with mode 0600, "
                "or set FLASK_SECRET_KEY"
            ) from exc
        _fsync_folder(path.parent)
    finally:
        os.unlink(temporary)


def _fsync_folder(folder: Path) -> None:
    """Make the new name in ``folder`` survive a crash: a key lost then would be replaced by another,
    and the secrets stored with the lost one could no longer be read."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform whose folders cannot be opened (Windows) has no folder fsync either
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
