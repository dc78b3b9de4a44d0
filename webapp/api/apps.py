"""Calling applications: registration, secret hashing and verification.

A send call names its application and secret; :func:`verify_credentials` checks them. A pair found
correct is remembered by the process for :data:`VERIFIED_FOR_SECONDS`, so that a busy caller's
repeated calls cost a dictionary lookup instead of a database read. A wrong secret is never
remembered (every attempt reads the row again), and any change to an application made through the
ORM in this process (disable, rotate, rate limit) forgets what was remembered at once; a change made
by another process is seen within :data:`VERIFIED_FOR_SECONDS`.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass

from flask import has_app_context
from flask_babel import gettext as _
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp import runtime
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, utcnow

APP_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AppError(ValueError):
    """An application cannot be registered as asked; the message says why."""


def hash_secret(secret: str) -> str:
    """Hash an application secret for storage.

    Secrets are 256-bit random values made by :func:`new_secret`, so a salted SHA-256 resists
    guessing as well as a slow password hash would, and keeps every API call fast.
    """
    salt = secrets.token_hex(16)
    digest = hashlib.sha256((salt + secret).encode()).hexdigest()
    return f"sha256${salt}${digest}"


def verify_secret(stored: str, secret: str) -> bool:
    """Whether ``secret`` matches the stored hash (constant-time comparison)."""
    try:
        scheme, salt, digest = stored.split("$", 2)
    except ValueError:
        return False
    if scheme != "sha256" or not isinstance(secret, str):
        return False
    return hmac.compare_digest(hashlib.sha256((salt + secret).encode()).hexdigest(), digest)


#: How long a verified (application, secret) pair is used without reading the application's row again.
VERIFIED_FOR_SECONDS = 1.0
#: The most pairs remembered at once (one per application in practice: wrong secrets are never kept).
VERIFIED_MAX_ENTRIES = 1024
_PART = "api.verified_credentials"


@dataclass(frozen=True)
class CallingApp:
    """What a send call needs of its application, read from its row when its secret was verified."""

    id: int
    app_code: str
    enabled: bool
    rate_limit_per_minute: int


class VerifiedCredentials:
    """The process's short-lived memory of correct (application code, secret) pairs.

    Keys hold a keyed digest of the secret (the key is random per process), never the secret itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key = os.urandom(32)
        self._entries: dict[tuple[str, bytes], tuple[CallingApp, float]] = {}

    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def get(self, app_code: str, secret: str) -> CallingApp | None:
        """The application of a pair verified less than VERIFIED_FOR_SECONDS ago, or None."""
        key = (app_code, self._digest(secret))
        with self._lock:
            found = self._entries.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def remember(self, app_code: str, secret: str, calling_app: CallingApp) -> None:
        """Remember a pair just verified against the stored hash."""
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= VERIFIED_MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[1] >= now}
                if len(self._entries) >= VERIFIED_MAX_ENTRIES:
                    self._entries.clear()
            self._entries[(app_code, self._digest(secret))] = (calling_app, now + VERIFIED_FOR_SECONDS)

    def forget(self) -> None:
        """Forget every pair (an application changed)."""
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Nothing runs in the background: forget everything."""
        self.forget()


def _verified() -> VerifiedCredentials:
    return runtime.state().part(_PART, VerifiedCredentials)


def remembered_credentials(app_code: str, secret: str) -> CallingApp | None:
    """The enabled application of a pair this process verified in the last VERIFIED_FOR_SECONDS, or None
    (then only :func:`verify_credentials` can tell)."""
    return _verified().get(app_code, secret)


def verify_credentials(app_code: str, secret: str) -> CallingApp | None:
    """The application named ``app_code`` when ``secret`` is its secret (enabled or not), else None.

    A pair verified in the last VERIFIED_FOR_SECONDS is answered from memory when its application
    was enabled; anything else reads the row and checks the stored hash.
    """
    remembered = _verified()
    found = remembered.get(app_code, secret)
    if found is not None:
        return found
    row = db.session.scalar(select(ApiApp).where(ApiApp.app_code == app_code))
    if row is None or not verify_secret(row.secret_hash, secret):
        return None
    calling_app = CallingApp(row.id, row.app_code, bool(row.enabled), row.rate_limit_per_minute)
    if calling_app.enabled:
        remembered.remember(app_code, secret, calling_app)
    return calling_app


def forget_verified() -> None:
    """Make the next call of every application verify its secret against the database again."""
    if has_app_context():
        _verified().forget()


@event.listens_for(ApiApp, "after_update")
@event.listens_for(ApiApp, "after_delete")
def _application_row_changed(_mapper, _connection, _target) -> None:
    # Disabled, rotated or given another limit through the ORM in this process: effective at once.
    forget_verified()


@event.listens_for(Session, "do_orm_execute")
def _application_rows_changed(state) -> None:
    # The same for bulk statements (session.execute(update(ApiApp)...)), which skip the hooks above.
    if (state.is_update or state.is_delete) and state.bind_mapper is not None and state.bind_mapper.class_ is ApiApp:
        forget_verified()


def new_secret() -> str:
    """A new random application secret (shown once, never stored in the clear)."""
    return secrets.token_urlsafe(32)


def create_app_credentials(app_code: str, *, actor: str = "system", rate_limit_per_minute: int | None = None) -> tuple[ApiApp, str]:
    """Register a calling application; return it and its secret (the only time the secret exists in clear)."""
    if not APP_CODE_RE.match(app_code or ""):
        raise AppError(_("An app code is 1 to 64 letters, digits, _ or -."))
    if db.session.scalar(select(ApiApp.id).where(ApiApp.app_code == app_code)):
        raise AppError(_("The app code %(code)s is already registered.", code=app_code))
    secret = new_secret()
    api_app = ApiApp(app_code=app_code, secret_hash=hash_secret(secret))
    if rate_limit_per_minute is not None:
        api_app.rate_limit_per_minute = rate_limit_per_minute
    try:
        with db.transaction() as session:
            session.add(api_app)
            session.add(AuditEntry(actor=actor, action="api_app.create", target=app_code))
    except IntegrityError:
        raise AppError(_("The app code %(code)s is already registered.", code=app_code)) from None
    return api_app, secret


def rotate_secret(api_app: ApiApp, *, actor: str) -> str:
    """Give the application a new secret (the old one stops working at once); return it."""
    secret = new_secret()
    with db.transaction() as session:
        api_app.secret_hash = hash_secret(secret)
        api_app.secret_rotated_at = utcnow()
        session.add(AuditEntry(actor=actor, action="api_app.rotate_secret", target=api_app.app_code))
    return secret
