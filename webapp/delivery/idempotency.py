"""The same request again answers the first message and sends nothing.

Two kinds of requests are recognised when they come again:

- a send API call with an ``Idempotency-Key`` (kept a day): the key is the caller's, scoped to its
  application, and the request body must be the same (its fingerprint is kept with the key);
- an alert webhook notification (kept ten minutes, Alertmanager's and Grafana's retry window): the
  key is the notification's identity (group, status, the alerts and their start times, receivers).

A :class:`Guard` names the request. :func:`webapp.delivery.engine.accept` inserts its record in the
same transaction as the message, before the deliveries, and the record is unique per application
and key: of two identical requests in flight at once (two workers), the second insert waits for the
first transaction and then fails, so only one message is ever stored and sent. The loser finds the
winner's record with :func:`earlier` and answers with that message.

Only hashes are stored: the caller's key and the notification's identity never reach the database.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.orm import Session

from webapp.extensions import db
from webapp.models import IdempotencyRecord, Message, utcnow

#: ``kind`` of a record made from a caller's Idempotency-Key.
KEY = "key"
#: How long a caller's key is remembered, and a webhook notification.
KEY_LIFETIME = timedelta(hours=24)
NOTIFICATION_LIFETIME = timedelta(minutes=10)
#: Length of a caller's key, in characters.
MAX_KEY_LENGTH = 128


def digest(*parts) -> str:
    """A SHA-256 (hex) of ``parts`` written as canonical JSON: equal values, equal digests."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Guard:
    """One request that must make at most one message: its application, key and body fingerprint."""

    api_app_id: int
    kind: str
    key_hash: str
    fingerprint: str
    lifetime: timedelta


def for_key(api_app_id: int, key: str, body) -> Guard:
    """The guard of a send API call with the caller's ``key``; ``body`` is what must not change under it."""
    return Guard(api_app_id, KEY, digest(KEY, key), digest(body), KEY_LIFETIME)


def for_notification(api_app_id: int, kind: str, identity) -> Guard:
    """The guard of a webhook notification: the same ``identity`` again is the same notification."""
    key_hash = digest(kind, identity)
    return Guard(api_app_id, kind, key_hash, key_hash, NOTIFICATION_LIFETIME)


@dataclass(frozen=True)
class Earlier:
    """The message an earlier request with the same key made, and that request's fingerprint."""

    message_id: int
    public_id: str
    fingerprint: str


class Repeated(Exception):
    """Raised by ``accept`` when another request with the same key was accepted first."""

    def __init__(self, earlier: Earlier):
        super().__init__(earlier.public_id)
        self.earlier = earlier


def earlier(guard: Guard) -> Earlier | None:
    """The live record of an earlier request with ``guard``'s key, or None.

    Read on a connection of its own: the caller's session may have just been rolled back (the
    insert that lost the race), and a fresh snapshot sees the winner's commit.
    """
    query = (select(IdempotencyRecord.message_id, IdempotencyRecord.public_id, IdempotencyRecord.fingerprint)
             .join(Message, Message.id == IdempotencyRecord.message_id)
             .where(IdempotencyRecord.api_app_id == guard.api_app_id, IdempotencyRecord.key_hash == guard.key_hash,
                    IdempotencyRecord.expires_at > utcnow()))
    with db.engine.connect() as connection:
        row = connection.execute(query).first()
    return Earlier(row.message_id, row.public_id, row.fingerprint) if row else None


def record(session: Session, guard: Guard, message: Message) -> None:
    """Insert ``guard``'s record for ``message`` in the caller's transaction (``accept``'s).

    An expired record of the same key (not purged yet) is removed first; a live one makes the
    insert fail with an IntegrityError, which ``accept`` turns into :class:`Repeated`.
    """
    now = utcnow()
    session.execute(delete(IdempotencyRecord).where(and_(
        IdempotencyRecord.api_app_id == guard.api_app_id, IdempotencyRecord.key_hash == guard.key_hash,
        IdempotencyRecord.expires_at <= now)))
    session.execute(insert(IdempotencyRecord).values(
        api_app_id=guard.api_app_id, kind=guard.kind, key_hash=guard.key_hash, fingerprint=guard.fingerprint,
        message_id=message.id, public_id=message.public_id, created_at=now, expires_at=now + guard.lifetime))


def purge_expired() -> int:
    """Forget records past their lifetime; the number removed."""
    with db.transaction() as session:
        return session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())).rowcount
