"""Throttling of failed API authentication, per application code and per client address.

Application secrets are long random values, but nothing should let anyone try them at full speed.
Like failed sign-ins (:mod:`webapp.auth.services`), every refused pair of application code and
secret is recorded in the ``login_failures`` table, which every worker and host shares; once an
application code, or a client address, has failed ``API_AUTH_MAX_FAILURES_PER_APP`` (or
``..._PER_ADDRESS``) times within ``API_AUTH_WINDOW_SECONDS``, its calls are answered 429 with
``Retry-After`` without the secret being checked at all, so guessing gains nothing, and a right
secret is refused too until the window has passed.

The rows share the table with failed sign-ins but never mix with them: their user name and address
start with ``:``, which no user name may contain, so the sign-in counts do not see them.
"""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from webapp import metrics
from webapp.extensions import db
from webapp.models import LoginFailure, utcnow

#: The mark of an API row in ``login_failures`` (user names are letters, digits and ``_ . @ -`` only).
MARK = ":"
_COLUMN = 64


class Throttled(Exception):
    """Too many failed authentications for an application code or an address; ``retry_after`` seconds."""

    def __init__(self, retry_after: int, by: str, app_code: str) -> None:
        super().__init__(f"throttled by {by} for {retry_after} s")
        self.retry_after, self.by, self.app_code = retry_after, by, app_code

    def sentence(self) -> str:
        """What the caller reads: why it is refused, how long to wait, and that a right secret waits too."""
        if self.by == "app":
            return _("Too many failed authentications for the application %(code)s: wait %(seconds)d s before "
                     "calling again. Until then every call is refused, even with the right secret; check the "
                     "secret your program sends.", code=self.app_code, seconds=self.retry_after)
        return _("Too many failed authentications from this address: wait %(seconds)d s before calling again. "
                 "Until then every call from it is refused, even with the right secret; check the application "
                 "codes and secrets your programs send.", seconds=self.retry_after)


def _app_key(app_code: str) -> str:
    # A registered code has at most 64 characters; the mark takes one, and two codes that differ only
    # in their 64th character share a count (harmless: both are refused only after many failures).
    return (MARK + app_code)[:_COLUMN]


def _address_key(address: str | None) -> str:
    return (MARK + (address or "-"))[:_COLUMN]


def _window() -> timedelta:
    return timedelta(seconds=int(current_app.config["API_AUTH_WINDOW_SECONDS"]))


def refuse_if_throttled(app_code: str, address: str | None) -> None:
    """Raise :class:`Throttled` when ``app_code`` or ``address`` failed too often within the window.

    One query reads both counts; the attempt is counted in the metrics when it is refused.
    """
    config = current_app.config
    window = _window()
    since = utcnow() - window
    app_key, address_key = _app_key(app_code), _address_key(address)
    by_app = LoginFailure.username == app_key
    by_address = LoginFailure.address == address_key
    app_count, app_oldest, address_count, address_oldest = db.session.execute(
        select(func.count().filter(by_app), func.min(LoginFailure.at).filter(by_app),
               func.count().filter(by_address), func.min(LoginFailure.at).filter(by_address))
        .where(or_(by_app, by_address), LoginFailure.at > since)
    ).one()
    for by, count, oldest, limit in (("app", app_count, app_oldest, config["API_AUTH_MAX_FAILURES_PER_APP"]),
                                     ("address", address_count, address_oldest, config["API_AUTH_MAX_FAILURES_PER_ADDRESS"])):
        if count and count >= int(limit):
            metrics.api_auth_refused("throttled")
            retry_after = max(1, int((oldest + window - utcnow()).total_seconds()) + 1)
            raise Throttled(retry_after, by, app_code[:_COLUMN])


def record_failure(app_code: str, address: str | None) -> None:
    """Remember one refused pair of application code and secret from ``address`` (committed)."""
    with db.transaction() as session:
        session.add(LoginFailure(username=_app_key(app_code), address=_address_key(address)))
    metrics.api_auth_refused("wrong_credentials")


def recent(limit: int = 10) -> list[dict]:
    """The application codes and addresses that failed within the window, most failures first.

    Each entry: ``app_code``, ``address``, ``failures`` (of this pair), ``last_at``, and whether calls
    are refused now because of the code (``app_throttled``) or of the address (``address_throttled``).
    """
    config = current_app.config
    since = utcnow() - _window()
    api_rows = (LoginFailure.username.startswith(MARK, autoescape=True), LoginFailure.at > since)
    pairs = db.session.execute(
        select(LoginFailure.username, LoginFailure.address, func.count(), func.max(LoginFailure.at))
        .where(*api_rows).group_by(LoginFailure.username, LoginFailure.address)
        .order_by(func.count().desc(), func.max(LoginFailure.at).desc()).limit(limit)
    ).all()
    if not pairs:
        return []
    per_app = dict(db.session.execute(select(LoginFailure.username, func.count()).where(*api_rows)
                                      .group_by(LoginFailure.username)).all())
    per_address = dict(db.session.execute(select(LoginFailure.address, func.count()).where(*api_rows)
                                          .group_by(LoginFailure.address)).all())
    app_limit, address_limit = int(config["API_AUTH_MAX_FAILURES_PER_APP"]), int(config["API_AUTH_MAX_FAILURES_PER_ADDRESS"])
    return [{"app_code": username[len(MARK):], "address": address[len(MARK):], "failures": count, "last_at": last_at,
             "app_throttled": per_app.get(username, 0) >= app_limit,
             "address_throttled": per_address.get(address, 0) >= address_limit}
            for username, address, count, last_at in pairs]
