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
``retry`` queues an administrator's retry, ``answers`` shapes what a sender is told, and
``idempotency`` recognises a request that comes again (an Idempotency-Key, a webhook's retry).
"""
from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from flask import Flask, current_app
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp import channel as channel_config
from webapp import logs, metrics, runtime
from webapp.clients import mp_client, work_client
from webapp.delivery import claims, idempotency
from webapp.delivery.content import Notification, template_message, wecom_message
from webapp.delivery.links import detail_url
from webapp.delivery.outcomes import Outcomes
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, Delivery, Message, new_public_id, utcnow
from webapp.secretbox import box
from webapp.tokens import TokenHolder, TokenSource, call_with_token
from webapp.wechat import MpClient, WeChatAPIError, WeChatError, diagnose_transport

log = logging.getLogger(__name__)

QUEUED, SENT, FAILED = "queued", "sent", "failed"
WECOM_BATCH = 1000


@dataclass
class Target:
    """One receiver of a message: its WeChat id, the user name it came from, or why it cannot be sent."""

    receiver: str
    username: str | None = None
    refusal: str | None = None  # set: the delivery fails at once, WeChat is not called
    reason: str | None = None  # with a refusal: its kind for the metrics (not_bound, invalid_id, ...)


# --- accepting ------------------------------------------------------------------------------------

def _claims() -> claims.ClaimRegistry:
    return claims.registry(current_app._get_current_object())


def _retry_budget() -> float:
    """Seconds one run of the retry job may spend sending, across every message it claimed."""
    return float(current_app.config["DELIVERY_TIME_BUDGET"]) * 3


@dataclass
class Accepted:
    """One delivery as :func:`accept` stored it: what sending it and answering need, without an ORM object."""

    id: int
    receiver: str
    username: str | None
    status: str
    errmsg: str | None
    client_msg_id: str
    created_at: datetime
    attempts: int = 0
    errcode: int | None = None


# Built once: a statement made afresh on every call costs more Python than the database needs to run it.
_INSERT_MESSAGE = insert(Message.__table__).returning(Message.__table__.c.id)
_INSERT_DELIVERIES = insert(Delivery.__table__).returning(Delivery.__table__.c.id, sort_by_parameter_order=True)


def accept(*, api_app_id: int | None, request_id: str, configured, notification: Notification, targets: list[Target],
           overrides: dict | None = None, source: str | None = None,
           guard: idempotency.Guard | None = None) -> Message:
    """Store the message and its deliveries in one transaction, claimed by this request.

    The deliveries are inserted in one multi-row statement (a fan-out may name 10,000 receivers)
    and kept on ``message.accepted`` (:class:`Accepted`, in receiver order). The claim is open when
    this returns: :func:`send_now` (or the caller, when it does not send) must let it go; until then
    this process keeps it alive. ``source`` says how the message came in (``models.SOURCES``).

    With a ``guard`` (an idempotency key, a webhook notification) its record is inserted in the same
    transaction, before the deliveries: when another request with the same key was accepted first,
    nothing is stored and :class:`~webapp.delivery.idempotency.Repeated` names that request's message.
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
    values = {"public_id": new_public_id(), "request_id": request_id, "api_app_id": api_app_id,
              "channel": configured.wx_type, "account": configured.account, "heading": notification.heading,
              "body": notification.message, "date": notification.date, "remark": notification.remark,
              "url": notification.url, "source": source, "created_at": now}
    if options:  # else NULL (a JSON column given None would store the JSON text null)
        values["options"] = options
    until = now + registry.lease
    rows = [{"receiver": t.receiver, "username": t.username, "client_msg_id": new_public_id(), "attempts": 0,
             "status": FAILED if t.refusal else QUEUED, "errmsg": t.refusal, "next_attempt_at": now,
             "claimed_until": None if t.refusal else until, "claimed_by": None if t.refusal else claim,
             "created_at": now, "updated_at": now} for t in targets]
    try:
        with db.transaction() as session:
            # Core statements on the session's connection: no ORM object to track and flush. The
            # message returned is built from the same values (not attached to any session).
            connection = session.connection()
            message = Message(id=connection.execute(_INSERT_MESSAGE, values).scalar_one(), **values)
            if guard is not None:
                # Before the deliveries: a second identical request waits here for the first one's
                # transaction, then fails, without having written thousands of rows first.
                idempotency.record(session, guard, message)
            for row in rows:
                row["message_id"] = message.id
            ids = connection.execute(_INSERT_DELIVERIES, rows).scalars().all() if rows else []
    except IntegrityError:
        registry.let_go(claim)
        found = idempotency.earlier(guard) if guard is not None else None
        if found is None:
            raise
        raise idempotency.Repeated(found) from None
    except BaseException:
        registry.let_go(claim)
        raise
    metrics.message_accepted(message.origin)
    _count_refusals(configured.wx_type, targets)
    message.accepted = [Accepted(id=i, receiver=r["receiver"], username=r["username"], status=r["status"],
                                 errmsg=r["errmsg"], client_msg_id=r["client_msg_id"], created_at=now)
                        for i, r in zip(ids, rows)]
    message.claim = claim  # not a column: the claim this request holds on the new rows
    return message


def _count_refusals(channel: str, targets: list[Target]) -> None:
    """Count the deliveries failed before WeChat was called, by reason: alerts on failed deliveries
    must see a receiver that is not bound as well as one WeChat refused."""
    refused: dict[str, int] = {}
    for target in targets:
        if target.refusal:
            refused[target.reason or "refused"] = refused.get(target.reason or "refused", 0) + 1
    for reason, count in refused.items():
        metrics.deliveries_refused(channel, reason, count)


# --- sending --------------------------------------------------------------------------------------

def _pool(app: Flask) -> ThreadPoolExecutor:
    return runtime.state(app).delivery_pool


def _notification(message: Message) -> Notification:
    return Notification(heading=message.heading, message=message.body, date=message.date, remark=message.remark, url=message.url)


@dataclass(frozen=True)
class RetryPolicy:
    """The retry settings, read once per run so that the pool's threads need no app context per call."""

    base_seconds: float
    max_seconds: float
    max_age: timedelta

    @classmethod
    def configured(cls) -> "RetryPolicy":
        """The policy of the current app's configuration."""
        config = current_app.config
        return cls(float(config["DELIVERY_RETRY_BASE_SECONDS"]), float(config["DELIVERY_RETRY_MAX_SECONDS"]),
                   timedelta(seconds=float(config["DELIVERY_MAX_AGE_SECONDS"])))

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait before the next attempt after ``attempts`` attempts."""
        delay = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        # Jitter spreads retries of many deliveries so they do not all hit WeChat in the same second
        # (timing only, nothing secret: the standard generator is right here).
        return timedelta(seconds=delay * random.uniform(0.8, 1.2))  # nosec B311


def _outcome(exc: Exception | None, *, attempts: int, created_at, policy: RetryPolicy) -> dict:
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
    too_old = now - created_at > policy.max_age
    if transient and not too_old:
        return {"status": QUEUED, "errcode": errcode, "errmsg": errmsg, "next_attempt_at": now + policy.backoff(attempts),
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


@dataclass(frozen=True)
class _TemplateSend:
    """What every template send of one message shares, prepared once in the thread that delivers."""

    tokens: TokenHolder
    client: MpClient
    template_id: str
    data: dict
    url: str | None
    policy: RetryPolicy
    outcomes: Outcomes


def _send_template(send: _TemplateSend, delivery_id: int, receiver: str, client_msg_id: str, attempts: int,
                   created_at) -> None:
    """One Official Account call, in a pool thread: no database work but the shared token and outcome batch."""
    try:
        try:
            msgid = send.tokens.call(lambda token: send.client.send_template(
                token, receiver, send.template_id, send.data, url=send.url, client_msg_id=client_msg_id))
        except WeChatError as exc:
            values = _outcome(exc, attempts=attempts, created_at=created_at, policy=send.policy)
        else:
            values = {**_outcome(None, attempts=attempts, created_at=created_at, policy=send.policy),
                      "wx_msgid": str(msgid)}
    except Exception:
        # Not WeChat's answer: the row stays claimed and is tried again once the claim runs out.
        log.exception("template send for delivery %s failed unexpectedly", delivery_id)
        send.outcomes.add([], CHANNEL_MP, {})
        raise
    send.outcomes.add([delivery_id], CHANNEL_MP, values)


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
            db.session.remove()  # no connection held across the WeChat call: the pool would starve under fan-out
        if changed is not None:
            _fail_changed(delivery_ids, changed, claim, CHANNEL_QYWX)
            return
        attempts = max(r[2] for r in rows) + 1
        created_at = rows[0][3]
        policy = RetryPolicy.configured()
        interval = int(app.config["WECOM_DUPLICATE_CHECK_SECONDS"])
        try:
            answer = call_with_token(source, lambda token: work_client().send_message(
                token, agentid, [r[1] for r in rows], adapted.msgtype, adapted.payload,
                enable_duplicate_check=True, duplicate_check_interval=interval))
        except WeChatError as exc:
            outcome = _outcome(exc, attempts=attempts, created_at=created_at, policy=policy)
            _record(delivery_ids, outcome, claim=claim)
            metrics.deliveries_finished(CHANNEL_QYWX, outcome, len(delivery_ids))
            return
        refused = {u.lower() for u in answer.get("invaliduser", [])}
        unlicensed = {u.lower() for u in answer.get("unlicenseduser", [])}
        sent = [r[0] for r in rows if r[1].lower() not in refused | unlicensed]
        if sent:
            outcome = _outcome(None, attempts=attempts, created_at=created_at, policy=policy)
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


def _wecom_jobs(message: Message, deliveries: list[Delivery]):
    """(function, delivery ids) per WeCom call needed for these deliveries of one message."""
    batch_of = wecom_batches(message.id)
    ids = sorted((d.id for d in deliveries), key=lambda i: (batch_of.get(i, 0), i))
    return [(_send_qy, list(group)) for _, group in groupby(ids, key=lambda i: batch_of.get(i, 0))]


def deliver(message: Message, deliveries: list[Delivery], budget: float, claim: str) -> dict[int, dict] | None:
    """Send now, within ``budget`` seconds; what is left stays queued and is handed to the retry job.

    Returns what :func:`deliver_many` returns.
    """
    return deliver_many([(message, deliveries)], budget, claim)


def deliver_many(work: list[tuple[Message, list[Delivery]]], budget: float, claim: str) -> dict[int, dict] | None:
    """Send the deliveries of several messages at once through the pool, within one ``budget``.

    Every WeChat call is handed to the pool before waiting, so one slow message does not hold the
    others back (the retry job drains many single-receiver messages at the pool's width). What the
    calls share is prepared here once: the channel, each message's rendering and detail link, one
    access token per account; the pool's threads then only call WeChat, and their outcomes are
    written in batches (:mod:`.outcomes`). The rows are held by ``claim``: each call holds it until
    its outcome is written, so calls still running after the budget keep their rows' leases alive.

    Returns the row values written for the deliveries whose outcome is known by now (delivery id ->
    status, errcode, errmsg, ...), when that is the whole story: every other delivery passed in is
    still queued. Returns None when only the database can tell (a WeCom batch or a changed account
    wrote outcomes of its own, or a row was taken over by another claim).

    Only the attributes of the objects passed in are read, and the caller's session is left as it
    is: a caller holding a transaction while it waits keeps a database connection other threads may
    need, so it should end its reads first (``accept`` commits, ``deliver_due`` reads on a session
    of its own).
    """
    app = current_app._get_current_object()
    pool = _pool(app)
    registry = _claims()
    outcomes = Outcomes(claim)
    configured = channel_config.load()
    policy = RetryPolicy.configured()
    client = mp_client()
    holders: dict[tuple[str, str], TokenHolder] = {}
    futures: dict = {}  # future -> (delivery ids, whether it reports to ``outcomes``)
    outcomes_tell_all = True

    def submit(func, ids: list[int], reports: bool, *args) -> None:
        registry.hold(claim)
        # logs.carry: the pool thread's log lines keep the id of the request (or job) that sends.
        future = pool.submit(logs.carry(func), *args)
        future.add_done_callback(lambda _future: registry.let_go(claim))
        futures[future] = (ids, reports)

    for message, deliveries in work:
        changed = account_changed(message, configured)
        if changed is not None:
            _fail_changed([d.id for d in deliveries], changed, claim, message.channel)
            outcomes_tell_all = False
            continue
        if message.channel != CHANNEL_MP:
            outcomes_tell_all = False
            for func, ids in _wecom_jobs(message, deliveries):
                submit(func, ids, False, app, claim, message.id, ids)
            continue
        adapted = template_message(_notification(message), configured.wx_template_fields, detail_url(message))
        source = configured.token_source()
        holder = holders.setdefault(source.key, TokenHolder(app, source))
        send = _TemplateSend(holder, client, configured.wx_template_id, adapted.payload["data"],
                             adapted.payload.get("url"), policy, outcomes)
        outcomes.expect(len(deliveries))
        for d in deliveries:
            submit(_send_template, [d.id], True, send, d.id, d.receiver, d.client_msg_id, d.attempts + 1, d.created_at)
    done, pending = wait(futures, timeout=budget)
    # Calls not started yet are dropped and their rows released, so the retry job takes them at
    # once; calls already running finish in the background and record their own outcome.
    dropped = [future for future in pending if future.cancel()]
    outcomes.cancelled(sum(1 for future in dropped if futures[future][1]))
    release = [i for future in dropped for i in futures[future][0]]
    if release:
        _record(release, {"claimed_until": None, "next_attempt_at": utcnow()}, claim=claim, attempt=False)
    outcomes.flush()  # what has been sent is written before the caller reads the answer
    for future in done:
        if future.exception() is not None:
            log.error("delivery call failed unexpectedly: %s", future.exception())
    return outcomes.written() if outcomes_tell_all else None


#: Of the time budget, what is kept for writing the outcomes and the answer after the calls: a fixed
#: part, and a part per delivery (releasing, reading back and answering 10,000 take about a second).
ANSWER_RESERVE_SECONDS = 0.5
ANSWER_RESERVE_PER_DELIVERY_SECONDS = 0.00015


def send_now(message: Message, started: float | None = None) -> dict[int, dict] | None:
    """Deliver a just-accepted message within the time budget, then let its claim go.

    The budget (DELIVERY_TIME_BUDGET) counts from ``started`` (a ``time.monotonic()`` reading, by
    default now): a request that spent time parsing and storing a large message waits that much
    less, so that its answer still comes within the budget. Returns what :func:`deliver_many`
    returns (for the answer: see :func:`webapp.delivery.answers.describe_sent`).
    """
    try:
        waiting = [d for d in message.accepted if d.status == QUEUED]
        if not waiting:
            return {}
        spent = 0.0 if started is None else time.monotonic() - started
        reserve = ANSWER_RESERVE_SECONDS + ANSWER_RESERVE_PER_DELIVERY_SECONDS * len(message.accepted)
        budget = float(current_app.config["DELIVERY_TIME_BUDGET"]) - spent - reserve
        return deliver(message, waiting, max(0.0, budget), message.claim)
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

