"""An alert webhook call: credentials, receivers from the query, the notification, and the send.

The notification goes the one way every message goes (``api.sending.send``): stored with one
delivery per receiver, delivered by the engine, retried, answered per receiver. A notification
delivered again within ten minutes (Alertmanager and Grafana retry when an answer is late) is
answered with the first message and not sent again (``delivery.idempotency``).

Unlike the BlueKing routes, every refusal is an HTTP error status, because that is what the senders
look at: 401 for credentials, 400 for a body that is not a notification or a URL without receivers
(nothing stored, nothing sent), 413 over 1 MiB (by Flask), 503 while no channel is configured
(the sender retries, and the message comes once the set-up is done).
"""
from __future__ import annotations

from flask import request
from flask_babel import gettext as _

from webapp.alerts import notifications
from webapp.api import sending, services
from webapp.api.services import NOT_CONFIGURED, VALIDATION_ERROR, ApiError, SendRequest
from webapp.delivery import idempotency

#: What a refusal for missing credentials adds, so that the sender's log says what to configure.
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="weixin-notify", charset="UTF-8"'}


def _credentials() -> dict:
    """HTTP Basic credentials (user: app code, password: app secret) as the send API's fields.

    The send API's own ways (``X-Bkapi-Authorization``, the query) still apply: ``authenticate``
    looks at that header first, then at these, then at the query.
    """
    auth = request.authorization
    if auth is not None and auth.type == "basic" and auth.username and auth.password:
        return {"bk_app_code": auth.username, "bk_app_secret": auth.password}
    return {}


def _bad_request(exc: ApiError) -> ApiError:
    """A validation error of the send API (HTTP 200, code 1306000) as the 400 the senders look at."""
    return ApiError(400, VALIDATION_ERROR, exc.message)


def _receivers() -> tuple[list[str], list[str]]:
    """The receivers named in the webhook's URL, parsed like the send API's fields."""
    values = {name: request.args.getlist(name) or None for name in ("receiver", "receiver__username")}
    if not values["receiver"] and not values["receiver__username"]:
        raise ApiError(400, VALIDATION_ERROR, _("The webhook URL names no receiver: add ?receiver__username=NAME1,NAME2 "
                                                "(user names) or ?receiver=ID1,ID2 (openids or WeCom userids) to it."))
    try:
        return services.receivers_of(values)
    except ApiError as exc:
        raise _bad_request(exc) from None


def _body() -> dict:
    """The request body as a JSON object (whatever its Content-Type), or a 400 saying why not."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, VALIDATION_ERROR, _("The request body is empty: the sender posts its notification "
                                                "as JSON."))
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ApiError(400, VALIDATION_ERROR, _("The request body is not valid UTF-8: the notification must be "
                                                "JSON encoded as UTF-8.")) from None
    try:
        return services.json_object(text)
    except ApiError as exc:
        raise _bad_request(exc) from None


def receive(sender: str, request_id: str) -> sending.Answer:
    """Send the notification of the current request from ``sender`` (``alertmanager`` or ``grafana``)
    to the receivers its URL names, once; raise ApiError when refused."""
    credentials = _credentials()
    try:
        caller = sending.admit(credentials)
    except ApiError as exc:
        if exc.status == 401:
            exc.headers = {**_CHALLENGE, **exc.headers}
        raise
    receivers, usernames = _receivers()
    try:
        group = notifications.parse(sender, _body())
    except notifications.NotANotification as exc:
        raise ApiError(400, VALIDATION_ERROR, str(exc)) from None
    note = notifications.compose(group)
    # The receivers belong to the identity: one notification posted to two URLs (two webhook_configs
    # naming other people) is two messages.
    guard = idempotency.for_notification(caller.app.id, sender, [group.identity(), receivers, usernames])
    send_request = SendRequest(note, receivers=receivers, usernames=usernames)
    try:
        return sending.send(caller, send_request, request_id, source=sender, guard=guard)
    except ApiError as exc:
        if exc.code == NOT_CONFIGURED:
            raise ApiError(503, NOT_CONFIGURED, exc.message, {"Retry-After": "60"}) from None
        raise
