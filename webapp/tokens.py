"""The token broker: WeChat access tokens kept in the database and fetched once for all processes.

A caller that finds no fresh token takes the row's short "fetching" lease (a conditional UPDATE,
committed at once), calls WeChat outside any transaction and stores the result: however many
threads and processes ask at once, one of them calls WeChat and the others wait for what it stored,
and no database lock is held while WeChat answers.

Official Account tokens come from ``/cgi-bin/stable_token`` in normal mode (several instances never
invalidate each other's token); WeCom tokens from ``gettoken``, one per application secret.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

from flask import current_app, has_app_context
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from webapp import metrics, runtime
from webapp.clients import http_timeout, mp_client, work_client
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, AccessToken, utcnow
from webapp.secretbox import box
from webapp.wechat import WeChatAPIError, WeChatError, redact
from webapp.wechat.errors import WeChatTransportError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A token with less life left than this is refreshed before use. WeChat hands out the next
#: Official Account token during the last 5 minutes of the current one.
REFRESH_AHEAD = timedelta(minutes=5)
#: The scheduler refreshes tokens this long before REFRESH_AHEAD, so callers rarely wait.
SCHEDULED_MARGIN = timedelta(minutes=3)


@dataclass(frozen=True)
class TokenSource:
    """Where one access token comes from: the channel, the row key, and how to fetch it."""

    kind: str
    account: str
    fetch: Callable[[], tuple[str, int]]

    @property
    def key(self) -> tuple[str, str]:
        """What names this token in the database and in a process's kept tokens."""
        return self.kind, self.account

    @classmethod
    def official_account(cls, appid: str, secret: str) -> "TokenSource":
        """The Official Account token of ``appid`` (stable_token, normal mode)."""
        client = mp_client()
        return cls(CHANNEL_MP, appid, lambda: client.stable_token(appid, secret))

    @classmethod
    def wecom(cls, corpid: str, corpsecret: str) -> "TokenSource":
        """The WeCom token of the application that ``corpsecret`` belongs to."""
        client = work_client()
        # Tokens belong to an application secret; the row key names the secret by a short hash only.
        account = f"{corpid}:{hashlib.sha256(corpsecret.encode()).hexdigest()[:16]}"
        return cls(CHANNEL_QYWX, account, lambda: client.get_token(corpid, corpsecret))


def _fresh(row: AccessToken | None, now, margin: timedelta) -> bool:
    """Whether the stored token has more than ``margin`` of life left.

    The margin never exceeds a fifth of the token's lifetime, so a short-lived token (as a test
    WeChat may issue) is still used for most of its life instead of being fetched on every call.
    """
    if not (row and row.token_enc and row.expires_at and row.fetched_at):
        return False
    return _usable_until(row.fetched_at, row.expires_at, margin) > now


def _usable_until(fetched_at, expires_at, margin: timedelta):
    """When a token fetched at ``fetched_at`` and expiring at ``expires_at`` is due for refreshing."""
    return expires_at - min(margin, (expires_at - fetched_at) / 5)


#: How often a caller waiting for another caller's fetch looks at the stored row again.
WAIT_POLL_SECONDS = 0.05


def _fetch_lease() -> timedelta:
    """How long a fetcher holds the right to fetch: its longest possible call, plus a margin.

    A fetcher that died (kill -9) leaves its lease behind; another caller takes over when it ends.
    """
    connect, read = http_timeout()
    return timedelta(seconds=connect + read + 5)


def get_token(source: TokenSource, *, rejected: str | None = None, margin: timedelta = REFRESH_AHEAD) -> str:
    """Return a usable access token for ``source``, fetching it only when no fresh one is stored.

    ``rejected`` is a token WeChat has just refused (40001/40014/42001): it is replaced unless
    another caller has replaced it already.

    Single flight without holding a lock while WeChat answers: the caller that takes the row's
    short "fetching" lease (one conditional UPDATE, committed at once) calls WeChat outside any
    transaction and stores the result; every other caller, in any thread or process, waits for
    that result by re-reading the row. Nothing else waits for the fetch: callbacks, sends of other
    accounts and the database's writers go on as usual, however slowly WeChat answers.
    """
    # This process's copy spares the read; the scheduler's look ahead (another margin) reads the row.
    kept = runtime.state().tokens if margin == REFRESH_AHEAD else None
    key = source.key
    if kept is not None:
        if rejected is not None:
            kept.forget(key, rejected)
        token = kept.get(key, utcnow())
        if token is not None:
            return token
    secret_box = box()
    lease = _fetch_lease()
    give_up = time.monotonic() + lease.total_seconds() + 5
    waiting_since = waited_for = None  # when this caller began waiting, and the token it saw then
    created = False
    while True:
        # The broker reads and writes on connections of its own, never the caller's session.
        with db.engine.connect() as connection:
            row = connection.execute(_select_row(source)).first()
        now = utcnow()
        if _fresh(row, now, margin):
            token = secret_box.decrypt(row.token_enc)
            if token != rejected:
                if kept is not None:
                    kept.keep(key, token, _usable_until(row.fetched_at, row.expires_at, margin), now)
                return token
        if row is None:
            if created:
                raise WeChatTransportError("connection", "the token row cannot be created")
            _ensure_row(source)
            created = True
            continue
        if (waiting_since is not None and row.fetching_until is None and row.fetched_at == waited_for
                and row.last_error_at is not None and row.last_error_at >= waiting_since):
            # The fetch this caller waited for failed: share the failure rather than calling WeChat
            # again (a wrong secret would otherwise be tried once per waiter).
            raise _stored_failure(row.last_error)
        if row.fetching_until is None or row.fetching_until <= now:
            fetcher = _take_fetch_lease(row, now, lease)
            if fetcher:
                token, usable_until = _fetch_and_store(source, row.id, fetcher, margin)
                if kept is not None:
                    kept.keep(key, token, usable_until, utcnow())
                return token
            continue  # another caller took the lease (or stored a token) first: look again
        # Someone else is fetching: look again in a moment.
        if waiting_since is None:
            waiting_since, waited_for = now, row.fetched_at
        if time.monotonic() > give_up:
            raise WeChatTransportError("timeout", "waited too long for another caller's access token fetch")
        time.sleep(WAIT_POLL_SECONDS)


def _select_row(source: TokenSource):
    return select(AccessToken.id, AccessToken.token_enc, AccessToken.expires_at, AccessToken.fetched_at,
                  AccessToken.fetching_until, AccessToken.last_error, AccessToken.last_error_at).where(
        AccessToken.kind == source.kind, AccessToken.account == source.account
    )


def _take_fetch_lease(row, now, lease: timedelta) -> str | None:
    """Take the right to fetch for ``row``'s token, unless another caller holds it or has just fetched.

    The UPDATE is conditional on the lease being free and the token being the one this caller saw,
    so of many callers at once exactly one gets a row back. Committed at once: no lock is kept.
    """
    fetcher = f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(6)}"
    with db.write_connection() as connection:
        taken = connection.execute(
            update(AccessToken)
            .where(AccessToken.id == row.id,
                   or_(AccessToken.fetching_until.is_(None), AccessToken.fetching_until <= now),
                   AccessToken.fetched_at.is_not_distinct_from(row.fetched_at))
            .values(fetching_by=fetcher, fetching_until=now + lease)
        ).rowcount
    return fetcher if taken == 1 else None


def _fetch_and_store(source: TokenSource, row_id: int, fetcher: str, margin: timedelta):
    """Call WeChat (no transaction open, no lock held), then store the token or the error and free the lease.

    Returns the token and when it is due for refreshing (with ``margin``).
    """
    secret_box = box()
    failure: WeChatError | None = None
    try:
        token, expires_in = source.fetch()
    except WeChatError as exc:
        failure = exc
        values = {"last_error": redact(str(exc))[:1000], "last_error_at": utcnow()}
    else:
        now = utcnow()
        values = {"token_enc": secret_box.encrypt(token), "fetched_at": now,
                  "expires_at": now + timedelta(seconds=max(int(expires_in), 1)), "last_error": None}
    finally:
        metrics.token_fetch(source.kind, failure)
    with db.write_connection() as connection:
        connection.execute(update(AccessToken).where(AccessToken.id == row_id, AccessToken.fetching_by == fetcher)
                           .values(fetching_by=None, fetching_until=None, **values))
    if failure is not None:
        raise failure
    log.info("fetched a new %s access token for %s (expires in %ss)", source.kind, _public(source.account), expires_in)
    return token, _usable_until(values["fetched_at"], values["expires_at"], margin)


_STORED_ERRCODE = re.compile(r"^WeChat errcode (-?\d+): (.*)$", re.S)


def _stored_failure(last_error: str | None) -> WeChatError:
    """The error another caller's fetch met, rebuilt from the row (WeChat's errcode when it had one)."""
    match = _STORED_ERRCODE.match(last_error or "")
    if match:
        return WeChatAPIError(int(match.group(1)), match.group(2))
    return WeChatTransportError("connection", f"another caller's token fetch failed: {last_error or ''}")


def _ensure_row(source: TokenSource) -> None:
    """Create the token's row once, so that there is always a row to take the lease on."""
    where = (AccessToken.kind == source.kind, AccessToken.account == source.account)
    try:
        with db.write_connection() as connection:
            if connection.execute(select(AccessToken.id).where(*where)).first() is None:
                connection.execute(insert(AccessToken).values(kind=source.kind, account=source.account))
    except IntegrityError:
        pass  # another process created it first (PostgreSQL)


def call_with_token(source: TokenSource, call: Callable[[str], T]) -> T:
    """Run ``call(token)``; when WeChat says the token is invalid or expired, refresh once and retry once."""
    return TokenHolder(current_app._get_current_object(), source).call(call)


class TokenHolder:
    """One access token shared by the many calls of one delivery run (a fan-out, a retry job run).

    The token is read (or fetched) once, by the first call that needs it; a token WeChat refuses is
    replaced once for all the calls (:func:`get_token` with ``rejected``); a failed fetch is shared
    too, so a wrong secret costs one WeChat call per run, not one per receiver. Calls that run in
    the delivery pool's threads have no app context: the holder pushes ``app``'s for the broker.
    """

    def __init__(self, app, source: TokenSource) -> None:
        self._app, self._source = app, source
        self._lock = threading.Lock()
        self._token: str | None = None
        self._failure: WeChatError | None = None

    def _fetch(self, rejected: str | None) -> str:
        if self._failure is not None:
            raise self._failure
        if rejected is None:  # the process's copy needs no app context (a pool thread has none)
            kept = runtime.state(self._app).tokens.get(self._source.key, utcnow())
            if kept is not None:
                self._token = kept
                return kept
        try:
            if has_app_context():  # a request or a job: its context serves
                self._token = get_token(self._source, rejected=rejected)
            else:  # a delivery pool thread
                with self._app.app_context():
                    self._token = get_token(self._source, rejected=rejected)
        except WeChatError as exc:
            self._failure = exc
            raise
        return self._token

    def token(self) -> str:
        """The run's token (fetched by the first caller; the others wait for it)."""
        token = self._token  # once set, read without the lock: every call of a fan-out asks
        if token is not None:
            return token
        with self._lock:
            return self._token if self._token is not None else self._fetch(None)

    def replace(self, rejected: str) -> str:
        """A token instead of ``rejected`` (one fetch however many calls had it refused)."""
        with self._lock:
            return self._token if self._token not in (None, rejected) else self._fetch(rejected)

    def call(self, call: Callable[[str], T]) -> T:
        """Run ``call(token)``; when WeChat refuses the token, replace it once and retry once."""
        token = self.token()
        try:
            return call(token)
        except WeChatAPIError as exc:
            if not exc.token_error:
                raise
            log.warning("%s token refused (errcode %s): replacing it once", self._source.kind, exc.errcode)
            return call(self.replace(token))


def token_status(kind: str, account_prefix: str) -> AccessToken | None:
    """The stored token row for a channel account (for health pages), or None."""
    return db.session.scalar(
        select(AccessToken).where(AccessToken.kind == kind, AccessToken.account.startswith(account_prefix))
        .order_by(AccessToken.fetched_at.desc())
        .limit(1)
    )


def _public(account: str) -> str:
    return account.split(":", 1)[0]
