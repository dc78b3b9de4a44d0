"""Sending for a calling application: the one path every endpoint that sends a message takes.

- :func:`send` sends a message already built and checked (a :class:`~webapp.api.services.SendRequest`)
  for an authenticated application: it resolves the receivers, stores the message, delivers it within
  the time budget and describes each receiver's outcome.
- :func:`send_blueking` reads a BlueKing ``cmsi`` call (credentials, body) and sends it with :func:`send`.
  An endpoint that builds its message another way (an alert webhook) calls :func:`admit`, builds its
  ``SendRequest`` and calls :func:`send` the same way.
- A request that names an idempotency key (or a webhook notification delivered again) is answered
  with the message the first such request made, and nothing is sent twice (``delivery.idempotency``).

Refusals raise :class:`~webapp.api.services.ApiError`; everything else is an :class:`Answer`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import jsonify
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from webapp import channel as channel_config
from webapp import metrics
from webapp.api import services
from webapp.api.services import NOT_CONFIGURED, SEND_FAILED, ApiError, Caller, SendRequest
from webapp.delivery import answers, engine, idempotency
from webapp.extensions import db
from webapp.models import SOURCE_API, Message

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """An answer of the send API: the fields of its JSON body, its HTTP status and extra headers."""

    request_id: str
    result: bool
    code: int
    message: str
    data: Any = None
    status: int = 200
    headers: dict = field(default_factory=dict)

    def body(self) -> dict:
        """The JSON body: ``result``, ``code``, ``message``, ``request_id`` and ``data``."""
        return {"result": self.result, "code": self.code, "message": self.message, "request_id": self.request_id,
                "data": self.data}

    def response(self):
        """The Flask response: the JSON body with the status and headers. The request id comes from
        ``logs``, which also sets the X-Request-Id header: the two always agree."""
        response = jsonify(self.body())
        response.status_code = self.status
        response.headers.update(self.headers)
        return response

    @classmethod
    def refusal(cls, exc: ApiError, request_id: str) -> Answer:
        """The answer to a refused request, in the same shape as any other."""
        return cls(request_id, result=False, code=exc.code, message=exc.message, status=exc.status,
                   headers=dict(exc.headers))


@dataclass(frozen=True)
class BluekingFormat:
    """Where a BlueKing call keeps its message (``send_weixin``: ``data.heading``; ``send_msg``: ``title``)."""

    heading_key: str
    message_key: str
    base64_key: str
    #: The ``msg_type`` the call must name, for calls that choose among message types.
    msg_type: str | None = None


SEND_WEIXIN = BluekingFormat("heading", "message", "is_message_base64")
#: BlueKing's generic ``send_msg`` with ``msg_type=weixin``: title -> heading, content -> message.
SEND_MSG = BluekingFormat("title", "content", "is_content_base64", msg_type="weixin")


def admit(credentials: dict) -> Caller:
    """The calling application, authenticated from ``credentials`` (or the request's header and query),
    with this call counted against its rate limit; raise ApiError 401 or 429."""
    caller = services.authenticate(credentials)
    services.check_rate(caller.app)
    return caller


def send_blueking(form: BluekingFormat, request_id: str) -> Answer:
    """Send the message of the current request, a BlueKing ``cmsi`` call in ``form``; raise ApiError when refused.

    Credentials are checked and the call counted before the body is validated, so a stream of
    invalid calls is rate limited like any other.
    """
    body = services.parse_body()
    caller = admit(body)
    if form.msg_type is not None and body.get("msg_type") != form.msg_type:
        raise services.invalid(f"msg_type must be {form.msg_type}: this service sends WeChat messages only")
    send_request = services.validate(body, heading_key=form.heading_key, message_key=form.message_key,
                                     base64_key=form.base64_key)
    guard = services.idempotency_guard(body, caller.app.id, form.heading_key)
    return send(caller, send_request, request_id, guard=guard)


def send(caller: Caller, send_request: SendRequest, request_id: str, *, source: str = SOURCE_API,
         guard: idempotency.Guard | None = None) -> Answer:
    """Send ``send_request`` for the application of ``caller``, and answer per receiver.

    The message is stored before WeChat is called, then delivered within the time budget; what is
    not finished by then is answered ``queued`` and delivered in the background. Raises ApiError
    when no channel is configured (nothing is stored then). ``source`` records how it came in.

    With a ``guard``, a request that was accepted before under the same key is not sent again: the
    answer is that message's current result (and a 409 ApiError when the earlier request's body was
    another one). This holds for two identical requests at the same moment too (see ``idempotency``).
    """
    started = time.monotonic()  # the time budget covers storing the message too
    if guard is not None:
        found = idempotency.earlier(guard)
        if found is not None:
            return _repeated(found, guard, source, request_id)
    try:
        configured = channel_config.require()
    except channel_config.NotConfigured:
        raise ApiError(200, NOT_CONFIGURED, "no WeChat channel is configured on this service yet: "
                                            "an administrator must finish the set-up") from None
    targets, invalid_names = services.resolve(send_request, configured)
    try:
        message = engine.accept(api_app_id=caller.app.id, request_id=request_id, configured=configured,
                                notification=send_request.notification, targets=targets,
                                overrides=send_request.overrides, source=source, guard=guard)
    except idempotency.Repeated as repeated:  # an identical request, at the same moment, was first
        return _repeated(repeated.earlier, guard, source, request_id)
    try:
        written = engine.send_now(message, started)
        data = (answers.describe(message, invalid_names) if written is None
                else answers.describe_sent(message, written, invalid_names))
    except (OperationalError, InterfaceError):
        # The message is stored: a 503 now would make the caller send it again (a second message to
        # every receiver). Answer "queued"; the retry job delivers it once the database is back.
        log.warning("database unavailable after message %s was stored: answering queued", message.public_id)
        data = answers.describe_accepted(message, invalid_names)
    return _outcome(data, request_id)


def _repeated(found: idempotency.Earlier, guard: idempotency.Guard, source: str, request_id: str) -> Answer:
    """The answer to a request made before under the same key: that message's current result, nothing sent.

    ``Idempotent-Replayed: true`` tells the caller so. The same key with another body is refused with
    409: the caller reused a key for a new message, which would otherwise be silently dropped.
    """
    if found.fingerprint != guard.fingerprint:
        raise ApiError(409, 409, _("This Idempotency-Key was already used for a different request (message "
                                   "%(id)s): nothing was sent. Use a new key for a new message, or send exactly "
                                   "the same request to get the first one's result.", id=found.public_id))
    data = answers.describe_stored(found.message_id, found.public_id)
    # The user names that could not receive are the deliveries without a WeChat id, as the first answer said.
    data["username_check"]["invalid"] = [d["username"] for d in data["deliveries"] if not d["receiver"]]
    metrics.request_repeated(source)
    answer = _outcome(data, request_id)
    answer.headers["Idempotent-Replayed"] = "true"
    return answer


def _outcome(data: dict, request_id: str) -> Answer:
    """The answer for a sent message: ``result`` true unless a receiver failed, with a sentence counting them."""
    statuses = [d["status"] for d in data["deliveries"]]
    failed, queued, total = statuses.count(engine.FAILED), statuses.count(engine.QUEUED), len(statuses)
    if failed:
        text = f"{failed} of {total} receivers failed" + (f", {queued} still being delivered" if queued else "")
    elif queued:
        text = f"accepted: {total - queued} sent, {queued} being delivered in the background"
    else:
        text = "OK"
    return Answer(request_id, result=failed == 0, code=0 if failed == 0 else SEND_FAILED, message=text, data=data)


def message_status(public_id: str, request_id: str) -> Answer:
    """The current status of each delivery of a message the calling application sent (404 for any other)."""
    caller = services.authenticate({})
    message = db.session.scalar(select(Message).where(Message.public_id == public_id[:32]))
    if message is None or message.api_app_id != caller.app.id:
        return Answer(request_id, result=False, code=404, message="no message with this id was sent by this application",
                      status=404)
    return Answer(request_id, result=True, code=0, message="OK", data=answers.describe(message))


def message_types(request_id: str) -> Answer:
    """The message types a BlueKing caller may ask for (``get_msg_type``); only ``weixin`` is served here."""
    services.authenticate({})
    active = channel_config.load() is not None
    types = [{"type": "weixin", "label": "WeChat", "label_en": "WeChat", "is_active": active}]
    types += [{"type": t, "label": label, "label_en": label, "is_active": False}
              for t, label in (("mail", "Email"), ("sms", "SMS"), ("voice", "Voice"))]
    return Answer(request_id, result=True, code=0, message="OK", data=types)
