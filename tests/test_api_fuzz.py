"""Property-based tests of the send API against its own OpenAPI document (schemathesis).

The schema is read from the running service (``/api/openapi.json``), and every operation in it
is called with generated data — valid and invalid (schemathesis' positive and negative modes) —
carrying valid credentials in ``X-Bkapi-Authorization``, with the Official Account channel
configured and users bound (the ``mp`` fixture). For every answer:

- never a 5xx (``not_a_server_error``);
- the status code is one the document lists, its Content-Type is the documented one, and the
  body matches the documented response schema (``status_code_conformance``,
  ``content_type_conformance``, ``response_schema_conformance``);
- it is always a JSON object with ``result``/``code``/``message``/``request_id`` (``json_answer``).

Checks that assume REST semantics the BlueKing API does not have (a 4xx for invalid input —
BlueKing answers HTTP 200 with ``result`` false and code 1306000) are not run.

Below that, the fuzzer's findings pinned down as plain regression tests.

The operations are driven through ``APIOperation.as_strategy`` and Hypothesis directly rather than
``schemathesis.pytest.from_fixture``: the lazy pytest loader of schemathesis 4.32.5 touches
``request.node._nodeid``, which pytest 9.2 no longer has.
"""
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import update

from tests.api_support import SEND, mp, service  # noqa: F401  (fixtures)
from webapp.api.openapi import document
from webapp.extensions import db
from webapp.models import ApiApp

MAX_EXAMPLES = 50


def json_answer(ctx, response, case):
    """Every answer of the API is a JSON object in BlueKing's shape, whatever was sent."""
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), f"not a JSON answer: {content_type!r}: {response.text[:200]!r}"
    body = json.loads(response.text)
    assert isinstance(body, dict), f"not a JSON object: {response.text[:200]!r}"
    assert {"result", "code", "message", "request_id"} <= set(body), f"missing keys: {sorted(body)}"
    assert isinstance(body["result"], bool) and isinstance(body["code"], int)
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, json_answer]

# (METHOD, path) of every documented operation; the test checks the served document has the same.
OPERATIONS = sorted((method.upper(), path) for path, item in document("http://x").get("paths", {}).items() for method in item)


@pytest.fixture
def database_url(either_database_url):
    """The service's database is an SQLite copy or a fresh PostgreSQL schema (PostgreSQL refuses some
    text SQLite stores, e.g. NUL characters: no input may turn that into a 500)."""
    return either_database_url


@pytest.fixture
def served_schema(mp):
    """The OpenAPI document as the running service serves it, with the channel configured, and credentials."""
    app, base, api = mp
    with app.app_context():  # generated sends must exercise the send path, not the rate limiter
        with db.transaction() as session:
            session.execute(update(ApiApp).values(rate_limit_per_minute=100000))
    schema = schemathesis.openapi.from_url(base + "/api/openapi.json")
    headers = {"X-Bkapi-Authorization": json.dumps({"bk_app_code": api.code, "bk_app_secret": api.secret,
                                                     "bk_username": "admin"})}
    return schema, headers


def test_the_served_document_lists_every_operation(served_schema):
    schema, _ = served_schema
    served = sorted((result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations())
    assert served == OPERATIONS


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_the_document(served_schema, method, path):
    schema, credentials = served_schema
    operation = schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def call(case):
        case.call_and_validate(headers=credentials, checks=CHECKS, timeout=30)

    call()


def test_an_oversized_body_gets_the_documented_413_in_the_api_shape(served_schema):
    """Found by the fuzzer: a body over ``MAX_CONTENT_LENGTH`` (1 MiB) is refused with HTTP 413, which
    the document must list, in the API's own shape (with ``request_id``)."""
    schema, credentials = served_schema
    operation = schema[SEND]["POST"]
    # 200000 characters, within the documented maxLength; JSON-escaped ("\u4e2d") it is 1.2 MB.
    case = operation.Case(body={"receiver": "中" * 200000, "data": {"heading": "h", "message": "m"}},
                          media_type="application/json")
    case.call_and_validate(headers=credentials, checks=CHECKS, timeout=30)


NUL_CASES = {
    "data.heading": (SEND, "POST", {"receiver__username": "alice", "data": {"heading": "disk\x00alert", "message": "m"}}),
    "data.message": (SEND, "POST", {"receiver__username": "alice", "data": {"heading": "h", "message": "disk\x00full"}}),
    "data.remark": (SEND, "POST", {"receiver__username": "alice", "data": {"heading": "h", "message": "m", "remark": "r\x00"}}),
    "receiver": (SEND, "POST", {"receiver": "oSim\x00x", "data": {"heading": "h", "message": "m"}}),
    "receiver__username": (SEND, "POST", {"receiver__username": "ali\x00ce", "data": {"heading": "h", "message": "m"}}),
    "bk_app_code": (SEND, "POST", {"bk_app_code": "bk\x00monitor", "bk_app_secret": "x",
                                   "receiver__username": "alice", "data": {"heading": "h", "message": "m"}}),
}


@pytest.mark.parametrize("field", list(NUL_CASES))
def test_nul_characters_are_refused_not_a_server_error(served_schema, field):
    """A NUL character anywhere in a request is refused in the API's shape, never a 500.

    Found by the fuzzer on PostgreSQL, whose text cannot hold NUL: such strings once reached the
    database and the request failed with HTTP 500 — even ``bk_app_code``, before authentication.
    """
    schema, credentials = served_schema
    path, method, body = NUL_CASES[field]
    case = schema[path][method].Case(body=body, media_type="application/json")
    if field == "bk_app_code":
        credentials = {}  # credentials from the body only
    case.call_and_validate(headers=credentials, checks=CHECKS, timeout=30)


def test_nul_character_in_a_message_id_is_refused_not_a_server_error(served_schema):
    """``GET /api/v1/messages/ab%00cd`` is refused (on PostgreSQL it once reached the query: a 500)."""
    schema, credentials = served_schema
    case = schema["/api/v1/messages/{message_id}"]["GET"].Case(path_parameters={"message_id": "ab\x00cd"})
    case.call_and_validate(headers=credentials, checks=CHECKS, timeout=30)
