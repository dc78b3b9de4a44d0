"""The OpenAPI 3 description of the send API and the alert webhooks, served at ``/api/openapi.json``."""
from __future__ import annotations

_RECEIVERS = {
    "oneOf": [{"type": "string", "maxLength": 100000},
              {"type": "array", "maxItems": 5000, "items": {"type": "string", "maxLength": 128}}],
    "description": "A list, or one string separated by commas, semicolons, spaces or newlines.",
}
_CREDENTIALS = {
    "bk_app_code": {"type": "string", "description": "Application code (or `app_code`)."},
    "bk_app_secret": {"type": "string", "description": "Application secret (or `app_secret`)."},
    "bk_username": {"type": "string", "description": "The user on whose behalf the program calls (informative)."},
}
_DELIVERY = {
    "type": "object",
    "required": ["receiver", "username", "status", "errcode", "errmsg"],
    "properties": {
        "receiver": {"type": "string", "description": "openid (Official Account) or userid (WeCom); empty for a user name that cannot receive."},
        "username": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": ["sent", "queued", "failed"]},
        "errcode": {"type": ["integer", "null"]},
        "errmsg": {"type": ["string", "null"]},
        "receipt": {"type": ["string", "null"], "description": "WeChat's delivery report, e.g. success or failed:user block."},
    },
}
_DATA = {
    "type": "object",
    "required": ["message_id", "deliveries", "username_check"],
    "properties": {
        "message_id": {"type": "string"},
        "deliveries": {"type": "array", "items": _DELIVERY},
        "username_check": {"type": "object", "properties": {"invalid": {"type": "array", "items": {"type": "string"}}}},
    },
}


def _answer(data_schema) -> dict:
    return {
        "type": "object",
        "required": ["result", "code", "message", "request_id"],
        "properties": {
            "result": {"type": "boolean"},
            "code": {"type": "integer", "description": "0 ok; 1306000 invalid request (nothing stored or sent); 1306201 some receivers failed; 1306202 no channel configured; 401/429 as the HTTP status."},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
            "data": {"anyOf": [data_schema, {"type": "null"}]},
        },
    }


def _responses(data_schema) -> dict:
    body = {"application/json": {"schema": _answer(data_schema)}}
    return {
        "200": {"description": "Answer (result false with code 1306000 for an invalid request).", "content": body},
        "401": {"description": "Missing, wrong or disabled application credentials.", "content": body},
        "429": {"description": "The application's rate limit is reached; see Retry-After.", "content": body},
        "400": {"description": "A query or form value holds a NUL character.", "content": body},
        "413": {"description": "The request body is larger than 1 MiB.", "content": body},
    }


def _send_body(heading: str, message: str, base64_flag: str, extra: dict | None = None) -> dict:
    data = {
        "type": "object",
        "required": [heading, message],
        "properties": {
            heading: {"type": "string", "maxLength": 1000},
            message: {"type": "string", "maxLength": 20000},
            "date": {"type": "string", "maxLength": 64, "description": "Default: the current local time, YYYY-mm-dd HH:MM."},
            "remark": {"type": "string", "maxLength": 4000},
            "url": {"type": "string", "maxLength": 2048, "description": "http(s) link opened from the message."},
            base64_flag: {"type": "boolean"},
        },
    }
    properties = {
        **_CREDENTIALS,
        "receiver": _RECEIVERS,
        "receiver__username": _RECEIVERS,
        "wx_qy_agentid": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+$"}]},
        "wx_qy_corpsecret": {"type": "string", "maxLength": 128},
        "idempotency_key": _IDEMPOTENCY_KEY,
        **(extra or {}),
    }
    if heading == "heading":
        properties["data"] = data
    else:
        properties.update(data["properties"])
    return {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": properties}}}}


_IDEMPOTENCY_KEY = {
    "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[ -~]{1,128}$",
    "description": "1-128 printable ASCII characters, scoped to the calling application and kept 24 hours: the same "
                   "key again answers the first message's current result (header Idempotent-Replayed: true) and "
                   "sends nothing; the same key with a different body answers 409. Retry a timeout or a 5xx with "
                   "the same request and key.",
}
_IDEMPOTENCY_HEADER = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": _IDEMPOTENCY_KEY,
                       "description": "Or the body field idempotency_key (BlueKing's SDK)."}
_CONFLICT = {"409": {"description": "This idempotency key was used for a different request; nothing was sent.",
                     "content": {"application/json": {"schema": _answer(_DATA)}}}}

_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_ALERT = {
    "type": "object",
    "required": ["labels", "startsAt"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "labels": _LABELS,
        "annotations": _LABELS,
        "startsAt": {"type": "string", "format": "date-time"},
        "endsAt": {"type": "string"},
        "generatorURL": {"type": "string"},
        "fingerprint": {"type": "string"},
    },
}


def _notification(required: list[str], extra: dict) -> dict:
    properties = {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": {"type": "string"},
        "groupKey": {"type": "string"},
        "groupLabels": _LABELS,
        "commonLabels": _LABELS,
        "commonAnnotations": _LABELS,
        "externalURL": {"type": "string"},
        "truncatedAlerts": {"type": "integer", "minimum": 0},
        "alerts": {"type": "array", "minItems": 1, "items": _ALERT},
        **extra,
    }
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def _webhook(sender: str, body: dict) -> dict:
    """A webhook operation: receivers in the query, credentials as HTTP Basic or the send API's header."""
    body_answer = {"application/json": {"schema": _answer(_DATA)}}
    return {"post": {
        "operationId": f"webhook_{sender.lower()}",
        "summary": f"A {sender} webhook notification, sent as one WeChat message to the receivers in the query",
        "description": "The same notification (group, status, alerts and their start times, receivers) posted again "
                       "within 10 minutes answers the first message (header Idempotent-Replayed: true) and sends "
                       "nothing.",
        "security": [{"basicAuth": []}, {"bkapiHeader": []}],
        "parameters": [
            {"name": "receiver__username", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "User names, separated by commas (ignored when receiver is given)."},
            {"name": "receiver", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "openids or WeCom userids, separated by commas."},
            _AUTH_HEADER,
        ],
        "requestBody": body,
        "responses": {
            "200": {"description": "Sent (or a repeat of a notification already sent); per receiver.", "content": body_answer},
            "400": {"description": "Not such a notification, or no receiver in the query; nothing stored or sent.",
                    "content": body_answer},
            "401": {"description": "Missing or wrong credentials (HTTP Basic: app code and secret).", "content": body_answer},
            "413": {"description": "The request body is larger than 1 MiB.", "content": body_answer},
            "429": {"description": "The application's rate limit is reached; see Retry-After.", "content": body_answer},
            "503": {"description": "No WeChat channel is configured yet; retry later (Retry-After).", "content": body_answer},
        },
    }}


_AUTH_HEADER = {
    "name": "X-Bkapi-Authorization", "in": "header", "required": False,
    "description": 'JSON: {"bk_app_code": ..., "bk_app_secret": ..., "bk_username": ...}',
    "schema": {"type": "string"},
}


def document(server: str) -> dict:
    """The OpenAPI document, with ``server`` as its base URL."""
    send = {
        "summary": "Send a WeChat message (BlueKing cmsi send_weixin)",
        "parameters": [_AUTH_HEADER, _IDEMPOTENCY_HEADER],
        "requestBody": _send_body("heading", "message", "is_message_base64"),
        "responses": {**_responses(_DATA), **_CONFLICT},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "WeChat Notify send API", "version": "1.0",
                 "description": "BlueKing-compatible API to send WeChat Official Account template messages or WeCom application messages."},
        "servers": [{"url": server}],
        "paths": {
            "/api/c/compapi/cmsi/send_weixin/": {"post": {**send, "operationId": "send_weixin"}},
            "/api/c/compapi/v2/cmsi/send_weixin/": {"post": {**send, "operationId": "send_weixin_v2"}},
            "/api/c/compapi/cmsi/send_msg/": {"post": {
                "operationId": "send_msg", "summary": "Send a message of msg_type weixin (BlueKing cmsi send_msg)",
                "parameters": [_AUTH_HEADER, _IDEMPOTENCY_HEADER],
                "requestBody": _send_body("title", "content", "is_content_base64",
                                          {"msg_type": {"type": "string", "enum": ["weixin"]}}),
                "responses": {**_responses(_DATA), **_CONFLICT},
            }},
            "/api/c/compapi/cmsi/get_msg_type/": {"get": {
                "operationId": "get_msg_type", "summary": "Message types and whether each is active",
                "parameters": [_AUTH_HEADER, *({"name": k, "in": "query", "required": False, "schema": v} for k, v in _CREDENTIALS.items())],
                "responses": _responses({"type": "array", "items": {"type": "object"}}),
            }},
            "/api/v1/messages/{message_id}": {"get": {
                "operationId": "message_status", "summary": "Current status of each delivery of a message",
                "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}, _AUTH_HEADER,
                               *({"name": k, "in": "query", "required": False, "schema": v} for k, v in _CREDENTIALS.items())],
                "responses": {**_responses(_DATA), "404": {"description": "No such message from this application.",
                                                          "content": {"application/json": {"schema": _answer(_DATA)}}}},
            }},
            "/api/v1/webhooks/alertmanager/": _webhook("Alertmanager", _notification(
                ["status", "groupKey", "alerts"], {"version": {"type": "string", "enum": ["4"]}})),
            "/api/v1/webhooks/grafana/": _webhook("Grafana", _notification(
                ["status", "alerts"], {"version": {"type": "string"}, "orgId": {"type": "integer"},
                                       "title": {"type": "string"}, "state": {"type": "string"},
                                       "message": {"type": "string"}})),
        },
        "components": {"securitySchemes": {
            "basicAuth": {"type": "http", "scheme": "basic",
                          "description": "User name: the application code; password: its secret (the alert webhooks)."},
            "bkapiHeader": {"type": "apiKey", "in": "header", "name": "X-Bkapi-Authorization",
                            "description": 'JSON: {"bk_app_code": ..., "bk_app_secret": ...}'},
        }},
    }
