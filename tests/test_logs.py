"""Logs: a request id on every answer and every line, access lines without query strings, JSON lines, job ids."""
from __future__ import annotations

import json
import re

import pytest
import requests

from tests.api_support import SEND, service  # noqa: F401  (fixtures)
from tests.livesrv import serve
from webapp import channel, jobs
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID

LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) \[(?P<rid>[^\]]+)\] (?P<logger>\S+): (?P<message>.*)$")


def lines(text: str) -> list[dict]:
    """The text-format lines of captured stderr, parsed."""
    return [m.groupdict() for m in map(LINE.match, text.splitlines()) if m]


def test_a_sane_incoming_request_id_is_kept_and_echoed(client, capsys):
    answer = client.get("/healthz", headers={"X-Request-Id": "deploy-check.42_a"})
    assert answer.headers["X-Request-Id"] == "deploy-check.42_a"
    access = [line for line in lines(capsys.readouterr().err) if line["logger"] == "webapp.access"]
    assert access == [{"level": "INFO", "rid": "deploy-check.42_a", "logger": "webapp.access",
                       "message": access[0]["message"]}]
    assert re.fullmatch(r"GET /healthz 200 \d+(\.\d+)?ms from 127\.0\.0\.1", access[0]["message"])


@pytest.mark.parametrize("given", ["has spaces in it", "x" * 65, "semi;colon-1234", "short", ""])
def test_an_unusable_request_id_is_replaced(client, capsys, given):
    answer = client.get("/healthz", headers={"X-Request-Id": given})
    generated = answer.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert f"[{generated}] webapp.access" in capsys.readouterr().err


def test_every_line_of_a_request_carries_its_id(make_app, tmp_path, capsys):
    broken = tmp_path / "not-a-database.sqlite3"
    broken.write_bytes(b"this is not sqlite" * 100)
    client = make_app(DATABASE_URL=f"sqlite:///{broken}").test_client()
    assert client.get("/healthz", headers={"X-Request-Id": "req-broken-db"}).status_code == 503
    logged = lines(capsys.readouterr().err)
    warning = [line for line in logged if line["level"] == "WARNING"]
    assert warning and all(line["rid"] == "req-broken-db" for line in warning)
    assert "database unavailable" in warning[0]["message"]


def test_the_send_api_answers_with_the_same_id_as_the_logs(service, capsys):
    app, base, api = service
    # No X-Request-Id from the caller: the one chosen for the logs is the one in the answer.
    answer = requests.post(base + SEND, json={"receiver": "x", "data": {}}, headers=api.headers(), timeout=10)
    body = answer.json()
    assert body["request_id"] == answer.headers["X-Request-Id"]
    access = [line for line in lines(capsys.readouterr().err) if line["logger"] == "webapp.access"]
    assert [line["rid"] for line in access if SEND in line["message"]] == [body["request_id"]]


def test_access_lines_leave_query_strings_and_tokens_out(make_app, capsys):
    app = make_app()
    # A real server (werkzeug's, as `flask run` uses) with its own request log switched on.
    with serve(app, quiet=False) as base:
        requests.get(base + "/healthz?bk_app_secret=QUERY-SECRET-1&nonce=NONCE-77", timeout=5)
        requests.get(base + "/m/CAPABILITY-TOKEN-9", timeout=5)
    err = capsys.readouterr().err
    assert "QUERY-SECRET-1" not in err and "NONCE-77" not in err and "CAPABILITY-TOKEN-9" not in err
    assert "GET /healthz 200" in err and "GET /m/*** " in err


def test_json_lines(make_app, capsys):
    client = make_app(LOG_FORMAT="json").test_client()
    try:
        client.get("/healthz?code=abc", headers={"X-Request-Id": "json-req-0001"})
        entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    finally:
        make_app()  # back to text lines for the tests that follow
    access = [e for e in entries if e["logger"] == "webapp.access"]
    assert len(access) == 1
    line = access[0]
    assert set(line) >= {"time", "level", "logger", "message", "request_id", "method", "path", "status", "duration_ms",
                         "client"}
    assert (line["request_id"], line["method"], line["path"], line["status"], line["level"], line["client"]) == (
        "json-req-0001", "GET", "/healthz", 200, "INFO", "127.0.0.1")
    assert isinstance(line["duration_ms"], (int, float)) and line["time"].endswith("+00:00")


def test_an_unknown_log_format_stops_the_start(make_app):
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        make_app(LOG_FORMAT="xml")


def test_scheduler_jobs_log_with_their_job_id(app, capsys):
    # An Official Account whose API cannot be reached (the test configuration's port 9): the token job fails.
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET,
                                        "wx_token": "JobToken2026", "wx_template_id": TEMPLATE_NOTIFICATION_ID}),
                     actor="test")
    scheduler = jobs.build_scheduler(app)
    job = scheduler.get_job("refresh_tokens")
    job.func()  # what the scheduler runs: the job inside an app context
    err = capsys.readouterr().err
    failed = [line for line in lines(err) if line["message"].startswith("job refresh_tokens failed")]
    assert failed and failed[0]["rid"] == "refresh_tokens"
    assert MP_SECRET not in err


def test_an_api_error_answer_carries_the_request_id_of_the_header(client):
    """A refused API call names the same request id in its JSON as in its X-Request-Id header."""
    answer = client.get("/api/c/compapi/cmsi/no_such_component/",
                        headers={"X-Request-Id": "caller-req-12345", "Accept": "application/json"})
    assert answer.status_code == 404 and answer.json["result"] is False
    assert answer.headers["X-Request-Id"] == "caller-req-12345"
    assert answer.json["request_id"] == "caller-req-12345"
