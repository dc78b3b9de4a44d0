"""The delivery engine: accepted messages are stored first, then delivered once, then retried.

- ``accept`` stores the message and one delivery row per receiver in one transaction, before any
  call to WeChat, claimed by the calling request (a claim of this live process: see ``claims``).
- ``deliver`` sends within a time budget: Official Account deliveries concurrently through a bounded
  pool (one call per openid), WeCom deliveries in batches of up to 1000 userids per call. What is
  not finished when the budget runs out stays ``queued`` and is released to the retry job.
- ``deliver_due`` (a scheduler job) claims due deliveries — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
  the write lock on SQLite — so two workers never take the same row, and retries transient failures
  with exponential backoff and jitter until the maximum age. Rows whose claim ran out (its process
  died) are due again within one lease.
- A message is sent only through the channel and account it was accepted for: when the configured
  account changed meanwhile, its deliveries fail at once with a sentence, WeChat is not called.
- A retry of a call whose answer was lost (a crash, a timeout) is never a second message: template
  messages carry one ``client_msg_id`` per delivery, and WeCom batches are sent with
  ``enable_duplicate_check`` and rebuilt identically (same receivers, same order, same content).

Next to it: ``links`` signs the detail links, ``receipts`` records WeChat's delivery reports,
``retry`` queues an administrator's retry, and ``answers`` shapes what a sender is told.
"""
from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta
from itertools import groupby

from flask import Flask, current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from webapp import channel as channel_config
from webapp import logs, metrics, runtime
from webapp.clients import mp_client, work_client
from webapp.delivery import claims
from webapp.delivery.content import Notification, template_message, wecom_message
from webapp.delivery.links import detail_url
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, Delivery, Message, utcnow
from webapp.secretbox import box
from webapp.tokens import TokenSource, call_with_token
from webapp.wechat import WeChatAPIError, WeChatError, diagnose_transport

log = logging.getLogger(__name__)

QUEUED, SENT, FAILED = "queued", "sent", "failed"
WECOM_BATCH = 1000


@dataclass
class Target:
    """One receiver of a message: its WeChat id, the user name it came from, or why it cannot be sent."""

    receiver: str
    username: str | None = None
    refusal: str | None = None  # set: the delivery fails at once, WeChat is not called


# --- accepting ------------------------------------------------------------------------------------

def _claims() -> claims.ClaimRegistry:
    return claims.registry(current_app._get_current_object())


def _retry_budget() -> float:
    """Seconds one run of the retry job may spend sending, across every message it claimed."""
    return float(current_app.config["DELIVERY_TIME_BUDGET"]) * 3


def accept(*, api_app_id: int | None, request_id: str, configured, notification: Notification, targets: list[Target],
           overrides: dict | None = None) -> Message:
    """Store the message and its deliveries in one transaction, claimed by this request.

    The claim is open when this returns: :func:`send_now` (or the caller, when it does not send)
    must let it go; until then this process keeps it alive.
    """
    now = utcnow()
    registry = _claims()
    claim = registry.open()
    options = {}
    if overrides:
        if overrides.get("agentid"):
            options["agentid"] = int(overrides["agentid"])
        if overrides.get("corpsecret"):
            options["corpsecret_enc"] = box().encrypt(overrides["corpsecret"])
    message = Message(request_id=request_id, api_app_id=api_app_id, channel=configured.wx_type, account=configured.account,
                      heading=notification.heading, body=notification.message, date=notification.date,
                      remark=notification.remark, url=notification.url, options=options or None)
    for target in targets:
        delivery = Delivery(receiver=target.receiver, username=target.username, next_attempt_at=now,
                            claimed_until=now + registry.lease, claimed_by=claim)
        if target.refusal:
            delivery.status, delivery.errmsg, delivery.claimed_until, delivery.claimed_by = FAILED, target.refusal, None, None
        message.deliveries.append(delivery)
    try:
        with db.transaction() as session:
            session.add(message)
    except BaseException:
        registry.let_go(claim)
        raise
    message.claim = claim  # not a column: the claim this request holds on the new rows
    return message


# --- sending --------------------------------------------------------------------------------------

def _pool(app: Flask) -> ThreadPoolExecutor:
    return runtime.state(app).delivery_pool


def _notification(message: Message) -> Notification:
    return Notification(heading=message.heading, message=message.body, date=message.date, remark=message.remark, url=message.url)


def _backoff(attempts: int) -> timedelta:
    base = float(current_app.config["DELIVERY_RETRY_BASE_SECONDS"])
    ceiling = float(current_app.config["DELIVERY_RETRY_MAX_SECONDS"])
    delay = min(ceiling, base * 2 ** max(0, attempts - 1))
    # Jitter spreads retries of many deliveries so they do not all hit WeChat in the same second
    # (timing only, nothing secret: the standard generator is right here).
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))  # nosec B311


def _outcome(exc: Exception | None, *, attempts: int, created_at, channel: str) -> dict:
    """The row update for one finished attempt."""
    now = utcnow()
    if exc is None:
        return {"status": SENT, "errcode": None, "errmsg": None, "sent_at": now, "claimed_until": None}
    if isinstance(exc, WeChatAPIError):
        errcode, errmsg, transient = exc.errcode, exc.errmsg, exc.transient
        sentence = exc.diagnosis.message("en")
    else:
        diagnosis = diagnose_transport(exc) if isinstance(exc, WeChatError) else None
        errcode, errmsg, transient = None, str(exc)[:500], True
        sentence = diagnosis.message("en") if diagnosis else "unexpected error"
    too_old = now - created_at > timedelta(seconds=float(current_app.config["DELIVERY_MAX_AGE_SECONDS"]))
    if transient and not too_old:
        return {"status": QUEUED, "errcode": errcode, "errmsg": errmsg, "next_attempt_at": now + _backoff(attempts),
                "claimed_until": None}
    if transient:
        errmsg = f"gave up after {attempts} attempts: {errmsg or sentence}"
    return {"status": FAILED, "errcode": errcode, "errmsg": errmsg, "claimed_until": None}


def _record(delivery_ids: list[int], values: dict, *, claim: str, attempt: bool = True) -> None:
    """Write one attempt's outcome (and count the attempt) for these deliveries, and end their claim.

    Only rows still held by ``claim`` are written: a row another process took over (this one was
    stalled past its lease) keeps what that process records.
    """
    if attempt:
        values = {**values, "attempts": Delivery.attempts + 1}
    with db.write_connection() as connection:
        written = connection.execute(
            update(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.claimed_by == claim)
            .values(updated_at=utcnow(), **values)).rowcount
    if written < len(delivery_ids):
        log.warning("%d of %d deliveries were taken over by another claim; their outcome here is not recorded",
                    len(delivery_ids) - written, len(delivery_ids))


def _account_label(channel: str, account: str) -> str:
    return f"{'Official Account' if channel == CHANNEL_MP else 'WeCom'} {account}"


def account_changed(message: Message, configured) -> str | None:
    """Why ``message`` must not be sent with the configured channel, or None when it may.

    A message is sent only through the channel and account it was accepted for: another account's
    token and ids do not belong together (WeChat would answer 40001 or deliver to nobody).
    """
    if configured is None:
        return ("no WeChat channel is configured any more, so this message was not sent; "
                "send it again once an administrator has configured one")
    if (configured.wx_type, configured.account) != (message.channel, message.account):
        return (f"the configured WeChat account changed after this message was accepted (it was for "
                f"{_account_label(message.channel, message.account)}, the service now uses "
                f"{_account_label(configured.wx_type, configured.account)}), so it was not sent; "
                "send it again if it is still wanted")
    return None


def _fail_changed(delivery_ids: list[int], reason: str, claim: str, channel: str) -> None:
    outcome = {"status": FAILED, "errcode": None, "errmsg": reason, "claimed_until": None}
    _record(delivery_ids, outcome, claim=claim, attempt=False)
    metrics.deliveries_finished(channel, outcome, len(delivery_ids))


def _send_mp(app: Flask, claim: str, message_id: int, delivery_id: int) -> None:
    with app.app_context():
        try:
            message = db.session.get(Message, message_id)
            delivery = db.session.get(Delivery, delivery_id)
            configured = channel_config.load()
            changed = account_changed(message, configured)
            if changed is None:
                adapted = template_message(_notification(message), configured.wx_template_fields, detail_url(message))
            receiver, client_msg_id, created_at = delivery.receiver, delivery.client_msg_id, delivery.created_at
            attempts = delivery.attempts + 1
        finally:
            # Give the connection back before calling WeChat: a thread holding one while it waits for
            # WeChat and then for another connection (token, outcome) starves the pool under fan-out.
            db.session.remove()
        if changed is not None:
            _fail_changed([delivery_id], changed, claim, CHANNEL_MP)
            return
        try:
            msgid = call_with_token(
                configured.token_source(),
                lambda token: mp_client().send_template(token, receiver, configured.wx_template_id,
                                                        adapted.payload["data"], url=adapted.payload.get("url"),
                                                        client_msg_id=client_msg_id),
            )
        except WeChatError as exc:
            outcome = _outcome(exc, attempts=attempts, created_at=created_at, channel=CHANNEL_MP)
            _record([delivery_id], outcome, claim=claim)
        else:
            outcome = _outcome(None, attempts=attempts, created_at=created_at, channel=CHANNEL_MP)
            _record([delivery_id], {**outcome, "wx_msgid": str(msgid)}, claim=claim)
        metrics.deliveries_finished(CHANNEL_MP, outcome)


def _wecom_source(configured, message: Message) -> tuple[TokenSource, int]:
    options = message.options or {}
    secret = box().decrypt(options["corpsecret_enc"]) if options.get("corpsecret_enc") else None
    return configured.token_source(secret), int(options.get("agentid") or configured.wx_qy_agentid)


def _send_qy(app: Flask, claim: str, message_id: int, delivery_ids: list[int]) -> None:
    """One WeCom call for up to 1000 deliveries of one message."""
    with app.app_context():
        try:
            message = db.session.get(Message, message_id)
            rows = [(r.id, r.receiver, r.attempts, r.created_at) for r in
                    db.session.scalars(select(Delivery).where(Delivery.id.in_(delivery_ids)).order_by(Delivery.id))]
            configured = channel_config.load()
            changed = account_changed(message, configured)
            if changed is None:
                adapted = wecom_message(_notification(message), configured.wx_qy_msgtype, detail_url(message))
                source, agentid = _wecom_source(configured, message)
        finally:
            db.session.remove()  # no connection held across the WeChat call (see _send_mp)
        if changed is not None:
            _fail_changed(delivery_ids, changed, claim, CHANNEL_QYWX)
            return
        attempts = max(r[2] for r in rows) + 1
        created_at = rows[0][3]
        interval = int(app.config["WECOM_DUPLICATE_CHECK_SECONDS"])
        try:
            answer = call_with_token(source, lambda token: work_client().send_message(
                token, agentid, [r[1] for r in rows], adapted.msgtype, adapted.payload,
                enable_duplicate_check=True, duplicate_check_interval=interval))
        except WeChatError as exc:
            outcome = _outcome(exc, attempts=attempts, created_at=created_at, channel=CHANNEL_QYWX)
            _record(delivery_ids, outcome, claim=claim)
            metrics.deliveries_finished(CHANNEL_QYWX, outcome, len(delivery_ids))
            return
        refused = {u.lower() for u in answer.get("invaliduser", [])}
        unlicensed = {u.lower() for u in answer.get("unlicenseduser", [])}
        sent = [r[0] for r in rows if r[1].lower() not in refused | unlicensed]
        if sent:
            outcome = _outcome(None, attempts=attempts, created_at=created_at, channel=CHANNEL_QYWX)
            _record(sent, {**outcome, "wx_msgid": str(answer.get("msgid") or "")}, claim=claim)
            metrics.deliveries_finished(CHANNEL_QYWX, outcome, len(sent))
        for reason, ids in (
            ("not a member of the organisation, or outside the application's visible range (invaliduser)", refused),
            ("the member has no WeCom API licence (unlicenseduser)", unlicensed),
        ):
            failed = [r[0] for r in rows if r[1].lower() in ids]
            if failed:
                _record(failed, {"status": FAILED, "errcode": None, "errmsg": reason, "claimed_until": None}, claim=claim)
                metrics.deliveries_finished(CHANNEL_QYWX, {"status": FAILED, "errcode": None}, len(failed))


def wecom_batches(message_id: int) -> dict[int, int]:
    """Delivery id -> batch number, fixed for the life of a message.

    Batches are the message's sendable deliveries in id order, 1000 at a time. A retry sends
    exactly the batch that was lost (same receivers, same order), which is what lets WeCom's
    duplicate check recognise it.
    """
    with db.engine.connect() as connection:  # not the caller's session: its snapshot must stay unopened
        ids = connection.execute(select(Delivery.id).where(Delivery.message_id == message_id, Delivery.receiver != "")
                                 .order_by(Delivery.id)).scalars().all()
    return {delivery_id: index // WECOM_BATCH for index, delivery_id in enumerate(ids)}


def _jobs(message: Message, deliveries: list[Delivery]):
    """(function, args) per WeChat call needed for these deliveries of one message."""
    ids = [d.id for d in deliveries]
    if message.channel == CHANNEL_MP:
        return [(_send_mp, (message.id, i)) for i in ids]
    batch_of = wecom_batches(message.id)
    ids.sort(key=lambda i: (batch_of.get(i, 0), i))
    return [(_send_qy, (message.id, list(group))) for _, group in groupby(ids, key=lambda i: batch_of.get(i, 0))]


def deliver(message: Message, deliveries: list[Delivery], budget: float, claim: str) -> None:
    """Send now, within ``budget`` seconds; what is left stays queued and is handed to the retry job."""
    deliver_many([(message, deliveries)], budget, claim)


def deliver_many(work: list[tuple[Message, list[Delivery]]], budget: float, claim: str) -> None:
    """Send the deliveries of several messages at once through the pool, within one ``budget``.

    Every WeChat call is handed to the pool before waiting, so one slow message does not hold the
    others back (the retry job drains many single-receiver messages at the pool's width). The rows
    are held by ``claim``: each call holds it until it has recorded its outcome, so calls still
    running after the budget keep their rows' leases alive.

    Only the ids and channel of the objects passed in are read, and the caller's session is left as
    it is: a caller holding a transaction while it waits keeps a database connection the pool's
    threads may need, so it should end its reads first (``accept`` commits, ``deliver_due`` reads
    on a session of its own).
    """
    app = current_app._get_current_object()
    pool = _pool(app)
    registry = _claims()
    futures = {}
    for message, deliveries in work:
        for func, args in _jobs(message, deliveries):
            registry.hold(claim)
            # logs.carry: the pool thread's log lines keep the id of the request (or job) that sends.
            future = pool.submit(logs.carry(func), app, claim, *args)
            future.add_done_callback(lambda _future: registry.let_go(claim))
            futures[future] = args[1] if isinstance(args[1], list) else [args[1]]
    done, pending = wait(futures, timeout=budget)
    # Calls not started yet are dropped and their rows released, so the retry job takes them at
    # once; calls already running finish in the background and record their own outcome.
    release = [i for future in pending if future.cancel() for i in futures[future]]
    if release:
        _record(release, {"claimed_until": None, "next_attempt_at": utcnow()}, claim=claim, attempt=False)
    for future in done:
        if future.exception() is not None:
            log.error("delivery call failed unexpectedly: %s", future.exception())


def send_now(message: Message) -> None:
    """Deliver a just-accepted message within the request's time budget, then let its claim go."""
    try:
        waiting = [d for d in message.deliveries if d.status == QUEUED]
        if waiting:
            deliver(message, waiting, float(current_app.config["DELIVERY_TIME_BUDGET"]), message.claim)
    finally:
        _claims().let_go(message.claim)


# --- retrying -------------------------------------------------------------------------------------

def claim_due(claim: str, limit: int = 200) -> list[int]:
    """Claim due queued deliveries for ``claim`` (of this process); two workers never get the same row.

    A row is due when its next attempt is due and no live claim holds it: never claimed, released,
    or claimed by a process that stopped renewing (it died) and whose lease ran out.
    """
    now = utcnow()
    lease = _claims().lease
    due = and_(Delivery.status == QUEUED, Delivery.next_attempt_at <= now,
               or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now))
    with db.write_connection() as connection:
        postgres = connection.dialect.name == "postgresql"
        query = select(Delivery.id, Delivery.message_id).where(due).order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        rows = connection.execute(query).all()
        # Whole messages are claimed, never part of one: a lost WeCom batch must be retried whole.
        rest = select(Delivery.id).where(due, Delivery.message_id.in_({r.message_id for r in rows}))
        if postgres:
            rest = rest.with_for_update(skip_locked=True)
        ids = sorted({r.id for r in rows} | set(connection.execute(rest).scalars())) if rows else []
        if ids:
            connection.execute(update(Delivery).where(Delivery.id.in_(ids))
                               .values(claimed_until=now + lease, claimed_by=claim))
    return ids


def deliver_due(limit: int = 200) -> int:
    """The retry job: claim due deliveries and send them (grouped per message, batched for WeCom)."""
    registry = _claims()
    claim = registry.open()
    try:
        ids = claim_due(claim, limit)
        if not ids:
            return 0
        # Read on a short session of its own: no transaction (nor connection) is held while the
        # pool's threads send, and the job's session is left alone.
        with Session(db.engine, expire_on_commit=False) as session:
            rows = list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.message_id, Delivery.id)))
            # One budget for the whole run, not one per message, so one run cannot go on for long.
            work = [(session.get(Message, message_id), list(group))
                    for message_id, group in groupby(rows, key=lambda d: d.message_id)]
        deliver_many(work, _retry_budget(), claim)
        return len(rows)
    finally:
        registry.let_go(claim)

