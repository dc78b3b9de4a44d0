"""The token broker: WeChat access tokens kept in the database and fetched once for all processes.

A caller that finds no fresh token takes the row's lock (``SELECT ... FOR UPDATE`` on PostgreSQL, the
database write lock on SQLite), reads the row again, and only then fetches: however many threads
and processes ask at once, one of them calls WeChat and the others use what it stored.

Official Account tokens come from ``/cgi-bin/stable_token`` in normal mode (several instances never
invalidate each other's token); WeCom tokens from ``gettoken``, one per application secret.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, TypeVar

from flask import current_app
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from webapp import metrics
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, AccessToken, utcnow
from webapp.secretbox import box
from webapp.wechat import MpClient, WeChatAPIError, WeChatError, WorkClient, redact
from webapp.wechat.http import shared_session

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


def http_timeout() -> tuple[float, float]:
    """(connect, read) seconds for one WeChat call, from WEIXIN_HTTP_TIMEOUT."""
    seconds = float(current_app.config.get("WEIXIN_HTTP_TIMEOUT") or 10)
    return min(5.0, seconds), seconds


def mp_client() -> MpClient:
    """The Official Account API client for the configured API base (shared connection pool)."""
    return MpClient(current_app.config["WEIXIN_MP_API_BASE"], session=shared_session(), timeout=http_timeout())


def work_client() -> WorkClient:
    """The WeCom API client for the configured API base (shared connection pool)."""
    return WorkClient(current_app.config["WEIXIN_QY_API_BASE"], session=shared_session(), timeout=http_timeout())


def _fresh(row: AccessToken | None, now, margin: timedelta) -> bool:
    """Whether the stored token has more than ``margin`` of life left.

    The margin never exceeds a fifth of the token's lifetime, so a short-lived token (as a test
    WeChat may issue) is still used for most of its life instead of being fetched on every call.
    """
    if not (row and row.token_enc and row.expires_at and row.fetched_at):
        return False
    margin = min(margin, (row.expires_at - row.fetched_at) / 5)
    return row.expires_at - now > margin


def get_token(source: TokenSource, *, rejected: str | None = None, margin: timedelta = REFRESH_AHEAD) -> str:
    """Return a usable access token for ``source``, fetching it only when no fresh one is stored.

    ``rejected`` is a token WeChat has just refused (40001/40014/42001): it is replaced unless
    another caller has replaced it already.
    """
    # The broker reads and writes on connections of its own, never the caller's session: a caller
    # in the middle of a transaction keeps it, and no connection is held while waiting for the lock.
    with db.engine.connect() as connection:
        row = connection.execute(_select_row(source)).first()
    if _fresh(row, utcnow(), margin):
        token = box().decrypt(row.token_enc)
        if token != rejected:
            return token
    return _refresh(source, rejected=rejected, margin=margin)


def _select_row(source: TokenSource):
    return select(AccessToken.token_enc, AccessToken.expires_at, AccessToken.fetched_at).where(
        AccessToken.kind == source.kind, AccessToken.account == source.account
    )


def _refresh(source: TokenSource, *, rejected: str | None, margin: timedelta) -> str:
    secret_box = box()
    _ensure_row(source)
    failure: WeChatError | None = None
    with db.locking_session() as session:
        row = session.scalar(
            select(AccessToken)
            .where(AccessToken.kind == source.kind, AccessToken.account == source.account)
            .with_for_update()
        )
        # Someone may have fetched while this caller waited for the lock: use theirs.
        if _fresh(row, utcnow(), margin):
            token = secret_box.decrypt(row.token_enc)
            if token != rejected:
                return token
        try:
            token, expires_in = source.fetch()
        except WeChatError as exc:
            # Keep the error on record (the block still commits), then hand it to the caller.
            failure = exc
            row.last_error = redact(str(exc))[:1000]
            row.last_error_at = utcnow()
        else:
            now = utcnow()
            row.token_enc = secret_box.encrypt(token)
            row.fetched_at = now
            row.expires_at = now + timedelta(seconds=max(int(expires_in), 1))
            row.last_error = None
        metrics.token_fetch(source.kind, failure)
    if failure is not None:
        raise failure
    log.info("fetched a new %s access token for %s (expires in %ss)", source.kind, _public(source.account), expires_in)
    return token


def _ensure_row(source: TokenSource) -> None:
    """Create the token's row once, so that there is always a row to lock."""
    where = (AccessToken.kind == source.kind, AccessToken.account == source.account)
    try:
        with db.write_connection() as connection:
            if connection.execute(select(AccessToken.id).where(*where)).first() is None:
                connection.execute(insert(AccessToken).values(kind=source.kind, account=source.account))
    except IntegrityError:
        pass  # another process created it first (PostgreSQL)


def call_with_token(source: TokenSource, call: Callable[[str], T]) -> T:
    """Run ``call(token)``; when WeChat says the token is invalid or expired, refresh once and retry once."""
    token = get_token(source)
    try:
        return call(token)
    except WeChatAPIError as exc:
        if not exc.token_error:
            raise
        log.warning("%s token refused (errcode %s): refreshing once", source.kind, exc.errcode)
        return call(get_token(source, rejected=token))


def token_status(kind: str, account_prefix: str) -> AccessToken | None:
    """The stored token row for a channel account (for health pages), or None."""
    return db.session.scalar(
        select(AccessToken).where(AccessToken.kind == kind, AccessToken.account.startswith(account_prefix))
        .order_by(AccessToken.fetched_at.desc())
        .limit(1)
    )


def _public(account: str) -> str:
    return account.split(":", 1)[0]
