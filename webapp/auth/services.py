"""Users: creation with password rules, authentication with throttling of failed attempts."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from webapp.auth.passwords import password_problem
from webapp.extensions import db
from webapp.models import AuditEntry, LoginFailure, User, utcnow

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class UserError(ValueError):
    """A user cannot be created as asked; the message says why, for a person, and ``field`` which input."""

    def __init__(self, message: str, field: str = "username") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Throttled(Exception):
    """Too many failed sign-ins; ``retry_after`` seconds until the next attempt is allowed."""

    retry_after: int


def check_new_credentials(username: str, password: str) -> None:
    """Raise UserError if the name or password breaks the rules (see webapp/auth/passwords.py)."""
    if not USERNAME_RE.match(username or ""):
        raise UserError(_("A user name is 1 to 64 letters, digits or the characters _ . @ -."))
    problem = password_problem(username, password)
    if problem:
        raise UserError(problem, "password")


def create_user(username: str, password: str, *, is_admin: bool = False, actor: str = "system") -> User:
    """Create a user (committed) after checking the rules and that the name is free."""
    check_new_credentials(username, password)
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise UserError(_("The user name %(name)s is already taken.", name=username))
    user = User(username=username, is_admin=is_admin)
    user.set_password(password)
    try:
        with db.transaction() as session:
            session.add(user)
            session.add(AuditEntry(actor=actor, action="user.create", target=username, detail={"admin": is_admin}))
    except IntegrityError:
        # Another request created the same name between the check above and this insert.
        raise UserError(_("The user name %(name)s is already taken.", name=username)) from None
    return user


def change_password(user: User, current: str, new: str) -> None:
    """Give ``user`` the password ``new`` after checking ``current`` and the rules (committed, audited).

    Raises UserError with ``field`` naming the input at fault ("current" or "password").
    """
    if not user.check_password(current or ""):
        raise UserError(_("Your current password is wrong. Type the password you signed in with."), "current")
    if new == current:
        raise UserError(_("The new password is the same as the current one. Choose a different one."), "password")
    check_new_credentials(user.username, new)
    with db.transaction() as session:
        user.set_password(new)
        session.add(AuditEntry(actor=user.username, action="user.password_change", target=user.username))


def reset_password(username: str, password: str, *, actor: str) -> User:
    """Set a new password for the user ``username`` on an administrator's behalf (committed, audited)."""
    user = db.session.scalar(select(User).where(func.lower(User.username) == (username or "").lower()))
    if user is None:
        raise UserError(_("There is no user %(name)s.", name=username))
    check_new_credentials(user.username, password)
    with db.transaction() as session:
        user.set_password(password)
        session.add(AuditEntry(actor=actor, action="user.password_reset", target=user.username))
        # The user may have been locked out by failed sign-ins: the new password works at once.
        session.execute(delete(LoginFailure).where(LoginFailure.username == user.username.lower()))
    return user


def admin_exists() -> bool:
    """Whether at least one enabled administrator exists (first-run set-up is then done)."""
    return db.session.scalar(select(User.id).where(User.is_admin.is_(True), User.enabled.is_(True)).limit(1)) is not None


def authenticate(username: str, password: str, address: str) -> User | None:
    """Return the user if the password is right; record and throttle failures.

    Raises Throttled when this user name or address has failed too often recently; the
    password is not even checked then, so guessing gains nothing.
    """
    config = current_app.config
    window = timedelta(seconds=config["LOGIN_WINDOW_SECONDS"])
    since = utcnow() - window
    name = (username or "").strip().lower()[:64]
    by_user = select(func.count(), func.min(LoginFailure.at)).where(LoginFailure.username == name, LoginFailure.at > since)
    by_address = select(func.count(), func.min(LoginFailure.at)).where(LoginFailure.address == address, LoginFailure.at > since)
    for statement, limit in ((by_user, config["LOGIN_MAX_FAILURES_PER_USER"]), (by_address, config["LOGIN_MAX_FAILURES_PER_ADDRESS"])):
        count, oldest = db.session.execute(statement).one()
        if count >= limit:
            raise Throttled(retry_after=max(1, int((oldest + window - utcnow()).total_seconds())))

    user = db.session.scalar(select(User).where(func.lower(User.username) == name))
    if user is None or not user.check_password(password or "") or not user.enabled:
        with db.transaction() as session:
            session.add(LoginFailure(username=name, address=address))
        return None
    with db.transaction() as session:
        user.last_login_at = utcnow()
        session.execute(delete(LoginFailure).where(LoginFailure.username == name))
    return user


def purge_old_failures() -> int:
    """Delete failed sign-ins (and failed API authentications, kept in the same table) older than their
    throttling windows; returns how many."""
    config = current_app.config
    cutoff = utcnow() - timedelta(seconds=max(config["LOGIN_WINDOW_SECONDS"], config.get("API_AUTH_WINDOW_SECONDS", 0)))
    with db.transaction() as session:
        return session.execute(delete(LoginFailure).where(LoginFailure.at < cutoff)).rowcount
