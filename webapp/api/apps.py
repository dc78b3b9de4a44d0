"""Calling applications: registration, secret hashing and verification."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

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
