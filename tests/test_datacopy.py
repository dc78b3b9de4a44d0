"""``flask --app wsgi copy-data TARGET_URL``: moving an installation to another database (SQLite to PostgreSQL).

The source is filled through the real paths an installation goes through (first-run page, CLI
commands, the wizard, QR binding through the simulated phone, a failed sign-in, the send API), so
every table holds rows; the copy is then checked row by row, and by running the service on it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, inspect, select

from tests.api_support import Api
from tests.binding_support import CALLBACK, KEY, TOKEN, browser
from tests.conftest import ADMIN, TEST_SECRET_KEY, AuthActions, csrf_token
from tests.crash_support import postgres_schema
from tests.livesrv import serve
from webapp import channel, datacopy
from webapp.extensions import db
from webapp.models import Base, Message, User
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, OPENID_BOB, TEMPLATE_NOTIFICATION_ID

ROOT = Path(__file__).resolve().parent.parent
QRCODE = "/console/user_center/weixin/mp/get_qrcode/"
PEOPLE = {"alice": (OPENID_ALICE, "blue-meadow-41"), "bob": (OPENID_BOB, "quiet-river-73")}


def invoke(runner, *args):
    """Run a flask command in-process; return its result (output with stderr mixed in)."""
    return runner.invoke(args=list(args), catch_exceptions=False)


@pytest.fixture
def source(make_app, tmp_path):
    """An installation on SQLite with rows in every table; yields (app, the calling app's secret, message id)."""
    app = make_app(WEIXIN_SIMULATOR=True)
    runner = app.test_cli_runner()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          PUBLIC_URL=base)
        # First-run page: the administrator (users, app_state, audit_log).
        admin = requests.Session()
        page = admin.get(base + "/setup/", timeout=10)
        answer = admin.post(base + "/setup/", data={"username": ADMIN[0], "password": ADMIN[1], "confirm": ADMIN[1],
                                                     "csrf_token": csrf_token(page.text)},
                            timeout=10)
        assert answer.status_code == 200 and "/setup/wizard" in answer.url, answer.url
        for name, (_, password) in PEOPLE.items():
            done = invoke(runner, "create-user", name, "--password", password)
            assert done.exit_code == 0, done.output
        created = invoke(runner, "create-api-app", "bk_monitor")
        assert created.exit_code == 0, created.output
        secret = created.output.strip().splitlines()[-1]
        config = tmp_path / "channel.json"
        config.write_text(json.dumps({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN,
                                      "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "safe",
                                      "wx_template_id": TEMPLATE_NOTIFICATION_ID}))
        assert invoke(runner, "weixin-config", str(config), "--no-check").exit_code == 0
        # The wizard keeps a draft (wizard_drafts) from its first answer; WeChat's server check arrives (callback_attempts).
        wizard = admin.get(base + "/setup/wizard/", timeout=10)
        assert wizard.status_code == 200
        answer = admin.post(base + "/setup/wizard/channel", data={"wx_type": "mp", "csrf_token": csrf_token(wizard.text)},
                            timeout=10)
        assert answer.status_code == 200 and answer.url.endswith("/setup/wizard/prerequisites"), answer.url
        check = requests.post(base + "/simulator/_control/mp/server", timeout=10,
                              json={"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"})
        assert check.json()["ok"], check.text
        # Each person scans their QR code (bind_tickets, callback_events, bindings).
        for name, (openid, password) in PEOPLE.items():
            session = browser(base, name, password)
            url = session.get(base + QRCODE, timeout=10).json()["data"]["url"]
            scanned = requests.post(base + "/simulator/_control/mp/scan", json={"openid": openid, "url": url}, timeout=20)
            assert scanned.status_code == 200, scanned.text
        # A mistyped password (login_failures).
        stranger = requests.Session()
        form = csrf_token(stranger.get(base + "/login", timeout=10).text)
        refused = stranger.post(base + "/login", data={"username": "alice", "password": "wrong", "csrf_token": form}, timeout=10)
        assert refused.status_code in (200, 401, 429) and "/login" in refused.url
        # A send with an idempotency key (messages, deliveries, access_tokens, rate_windows, idempotency_records).
        api = Api(base, "bk_monitor", secret)
        sent = requests.post(base + "/api/c/compapi/cmsi/send_weixin/", timeout=60,
                             headers={**api.headers(), "Idempotency-Key": "datacopy-1"},
                             json={"receiver__username": "alice,bob",
                                   "data": {"heading": "Disk full", "message": "db01 at 97%"}}).json()
        assert sent["result"] is True, sent
    with app.app_context():
        empty = [tbl.name for tbl in Base.metadata.sorted_tables
                 if not db.session.scalar(select(func.count()).select_from(tbl))]
    assert empty == [], f"the source should have rows in every table, these are empty: {empty}"
    return app, secret, sent["data"]["message_id"]


def rows(url: str) -> dict[str, list[dict]]:
    """Every row of every table of the database at ``url``, in primary-key order, as the models read them."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {tbl.name: [dict(row) for row in connection.execute(
                select(tbl).order_by(*tbl.primary_key.columns)).mappings()] for tbl in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def check_the_copy(make_app, source, target_url: str) -> None:
    """The target has the source's rows, and the service works on it: sign-in, API secret, channel secret, new ids."""
    app, secret, message_id = source
    result = invoke(app.test_cli_runner(), "copy-data", target_url)
    assert result.exit_code == 0, result.output
    assert "Stop the service" in result.output and "the counts match the source" in result.output
    assert "  deliveries: 2 row(s)" in result.output

    original = rows(app.config["DATABASE_URL"])
    assert rows(target_url) == original

    target = make_app(DATABASE_URL=target_url, WEIXIN_SIMULATOR=True)
    client = target.test_client()
    signed_in = AuthActions(client).login()
    assert signed_in.status_code == 302 and "/setup" not in signed_in.headers["Location"]
    with target.app_context():
        assert channel.load().wx_secret == MP_SECRET  # decrypted with the same SECRET_KEY
    top_user = max(row["id"] for row in original["users"])
    assert invoke(target.test_cli_runner(), "create-user", "carol", "--password", "sunny-orchard-58").exit_code == 0
    with serve(target) as base:
        target.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", PUBLIC_URL=base)
        api = Api(base, "bk_monitor", secret)
        status = api.status(message_id)
        assert status.status_code == 200 and [d["status"] for d in status.json()["data"]["deliveries"]] == ["sent", "sent"]
        again = api.send({"receiver__username": "alice", "data": {"heading": "Disk", "message": "fine again"}}).json()
        assert again["result"] is True, again
    with target.app_context():
        # New rows get ids after the copied ones (PostgreSQL's sequences were moved past them).
        assert db.session.scalar(select(User.id).where(User.username == "carol")) == top_user + 1
        newest = db.session.scalar(select(Message).where(Message.public_id == again["data"]["message_id"]))
        assert newest.id == max(row["id"] for row in original["messages"]) + 1


def test_copy_from_sqlite_to_sqlite(make_app, source, tmp_path):
    check_the_copy(make_app, source, f"sqlite:///{tmp_path / 'copy.sqlite3'}")


@pytest.mark.postgres
def test_copy_from_sqlite_to_postgresql(make_app, source, postgres_url):
    with postgres_schema(postgres_url) as target_url:
        check_the_copy(make_app, source, target_url)


def test_a_target_with_rows_is_refused_and_left_alone(make_app, users, tmp_path):
    target_url = f"sqlite:///{tmp_path / 'busy.sqlite3'}"
    busy = make_app(DATABASE_URL=target_url)
    assert invoke(busy.test_cli_runner(), "init-db").exit_code == 0
    assert invoke(busy.test_cli_runner(), "create-user", "someone", "--password", "green-valley-62").exit_code == 0
    before = rows(target_url)

    result = invoke(make_app().test_cli_runner(), "copy-data", target_url)
    assert result.exit_code == 1
    assert "the target database is not empty: it has rows in audit_log (1), users (1)" in result.output
    assert rows(target_url) == before


def test_a_failure_half_way_leaves_the_target_as_it_was(make_app, users, tmp_path, monkeypatch):
    target_url = f"sqlite:///{tmp_path / 'half.sqlite3'}"
    copy_table = datacopy._copy_table

    def failing(reading, writing, tbl, batch_size):
        if tbl.name == "users":  # after several tables were written, and the schema before them
            from sqlalchemy.exc import OperationalError

            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return copy_table(reading, writing, tbl, batch_size)

    monkeypatch.setattr(datacopy, "_copy_table", failing)
    result = invoke(make_app().test_cli_runner(), "copy-data", target_url)
    assert result.exit_code == 1
    assert "the copy failed and the target was left unchanged: disk I/O error" in result.output
    engine = create_engine(target_url)
    try:
        assert inspect(engine).get_table_names() == []  # not even the schema stayed
    finally:
        engine.dispose()


def test_rows_are_copied_in_batches(make_app, source, tmp_path, monkeypatch):
    """More rows than one batch: every batch arrives (the batch size is made tiny here)."""
    app, _, _ = source
    monkeypatch.setattr(datacopy, "BATCH_SIZE", 1)
    target_url = f"sqlite:///{tmp_path / 'batches.sqlite3'}"
    assert invoke(app.test_cli_runner(), "copy-data", target_url).exit_code == 0
    assert rows(target_url) == rows(app.config["DATABASE_URL"])


def test_the_database_in_use_is_not_a_target(app, database_url):
    result = invoke(app.test_cli_runner(), "copy-data", database_url)
    assert result.exit_code == 1
    assert "the target is the database the service uses now" in result.output


@pytest.mark.parametrize("url, sentence", [
    ("not a url", "is not a database URL: write it like postgresql+psycopg://"),
    ("oracle+nothing://u@h/db", "unknown database kind 'oracle+nothing'"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/weixin", "cannot open the target database: connection failed"),
])
def test_a_bad_target_url_is_explained_without_a_traceback(database_url, url, sentence):
    """As an operator runs it: the real ``flask`` command in its own process, exit status 1, one sentence."""
    env = {"PATH": "/usr/bin:/bin", "FLASK_DATABASE_URL": database_url, "FLASK_SECRET_KEY": TEST_SECRET_KEY,
           "FLASK_SCHEDULER_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "copy-data", url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert sentence in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("Error: ")


def test_a_target_made_by_init_db_and_still_empty_is_accepted(make_app, users, tmp_path):
    target_url = f"sqlite:///{tmp_path / 'prepared.sqlite3'}"
    assert invoke(make_app(DATABASE_URL=target_url).test_cli_runner(), "init-db").exit_code == 0
    source = make_app()
    result = invoke(source.test_cli_runner(), "copy-data", target_url)
    assert result.exit_code == 0, result.output
    assert rows(target_url) == rows(source.config["DATABASE_URL"])


def test_a_source_behind_the_code_must_be_upgraded_first(make_app, tmp_path):
    from alembic import command

    from webapp import migrate

    old_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(old_url)
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    result = invoke(make_app(DATABASE_URL=old_url).test_cli_runner(), "copy-data", f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert result.exit_code == 1
    assert "the source database is at schema revision 0001" in result.output
    assert "run `flask --app wsgi init-db` on it first" in result.output
