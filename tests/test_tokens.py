"""The token broker over real HTTP to the simulator: one fetch for many callers, recovery, refresh ahead."""
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update

from webapp import jobs, migrate
from webapp.extensions import db
from webapp.models import AccessToken, utcnow
from webapp.runtime import KEPT_TOKEN_RECHECK
from webapp.simulator.world import (MP_APPID, MP_SECRET, OPENID_ALICE, QY_CORPID, QY_CORPSECRET,
                                    TEMPLATE_NOTIFICATION_ID)
from webapp.clients import mp_client
from webapp.tokens import TokenSource, call_with_token, get_token
from webapp.wechat import WeChatAPIError

ROOT = Path(__file__).resolve().parent.parent


def _mp_source():
    return TokenSource.official_account(MP_APPID, MP_SECRET)


def test_token_is_fetched_once_and_stored_encrypted(sim_app, simulator):
    with sim_app.app_context():
        first = get_token(_mp_source())
        second = get_token(_mp_source())
        row = db.session.scalar(select(AccessToken))
    assert first == second and simulator.calls("stable_token") == 1
    assert row.kind == "mp" and row.account == MP_APPID and first not in row.token_enc
    assert row.expires_at > utcnow() + timedelta(minutes=100)


def test_wecom_tokens_are_kept_per_application_secret(sim_app, simulator):
    with sim_app.app_context():
        source = TokenSource.wecom(QY_CORPID, QY_CORPSECRET)
        assert get_token(source) == get_token(source)
        account = db.session.scalar(select(AccessToken.account))
    assert simulator.calls("gettoken") == 1
    assert account.startswith(QY_CORPID + ":") and QY_CORPSECRET not in account


def _send(token):
    return mp_client().send_template(token, OPENID_ALICE, TEMPLATE_NOTIFICATION_ID, {"keyword1": "hi"})


def test_an_invalidated_token_recovers_with_one_refresh(sim_app, simulator):
    with sim_app.app_context():
        call_with_token(_mp_source(), _send)
        simulator.control("tokens/invalidate", {"channel": "mp"})
        assert call_with_token(_mp_source(), _send)  # 40001, one refresh, one retry
    assert simulator.calls("stable_token") == 2
    assert len(simulator.messages(channel="mp")) == 2


def test_an_expired_token_recovers(sim_app, simulator):
    with sim_app.app_context():
        call_with_token(_mp_source(), _send)
        simulator.control("clock/advance", {"seconds": 7300})  # WeChat now answers 42001
        call_with_token(_mp_source(), _send)
    assert simulator.calls("stable_token") == 2


def _token_reads(app, action) -> int:
    """How many statements on the access token table ``action`` made through ``app``'s database."""
    from sqlalchemy import event

    statements = []

    def seen(conn, cursor, statement, *args):
        if "access_tokens" in statement:
            statements.append(statement)

    engine = app.extensions["database"].engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with app.app_context():
            action()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return len(statements)


def test_a_process_uses_the_token_it_holds_without_reading_it_again(sim_app, simulator):
    first = []
    assert _token_reads(sim_app, lambda: first.append(get_token(_mp_source()))) >= 1
    assert _token_reads(sim_app, lambda: first.append(call_with_token(_mp_source(), lambda token: token))) == 0
    assert first[0] == first[1] and simulator.calls("stable_token") == 1


def test_a_token_expired_in_the_database_is_replaced_within_the_recheck_time(sim_app, simulator):
    """Another process (or an operator) expiring the stored token is honoured by a process holding it."""
    with sim_app.app_context():
        get_token(_mp_source())
        with db.transaction() as session:
            session.execute(update(AccessToken).values(expires_at=utcnow() - timedelta(minutes=1)))
        time.sleep(KEPT_TOKEN_RECHECK.total_seconds() + 0.2)
        token = get_token(_mp_source())
        assert get_token(_mp_source()) == token  # kept again: no third fetch
    assert simulator.calls("stable_token") == 2


def test_a_token_refused_in_one_process_is_replaced_from_what_another_process_stored(make_app, simulator):
    # Two apps on one database are two processes: each keeps its own copy of the token.
    config = {"WEIXIN_MP_API_BASE": simulator.mp_base, "WEIXIN_QY_API_BASE": simulator.qy_base}
    first, second = make_app(**config), make_app(**config)
    with first.app_context():
        old = call_with_token(_mp_source(), lambda token: (_send(token), token)[1])
    with second.app_context():
        call_with_token(_mp_source(), _send)
    simulator.control("tokens/invalidate", {"channel": "mp"})
    with second.app_context():  # refused: one fetch, stored for every process
        new = call_with_token(_mp_source(), lambda token: (_send(token), token)[1])
    with first.app_context():  # still holds the old token: refused, then the stored one is used
        used = call_with_token(_mp_source(), lambda token: (_send(token), token)[1])
    assert new != old and used == new
    assert simulator.calls("stable_token") == 2
    assert len(simulator.messages(channel="mp")) == 4


def test_other_errors_are_not_retried(sim_app, simulator):
    with sim_app.app_context():
        with pytest.raises(WeChatAPIError) as caught:
            call_with_token(_mp_source(), lambda token: mp_client().send_template(token, "o-nobody", TEMPLATE_NOTIFICATION_ID, {}))
    assert caught.value.errcode == 40003 and simulator.calls("stable_token") == 1


def test_a_failed_fetch_is_recorded_without_secrets(sim_app, simulator):
    with sim_app.app_context():
        with pytest.raises(WeChatAPIError):
            get_token(TokenSource.official_account(MP_APPID, "f" * 32))
        row = db.session.scalar(select(AccessToken))
    assert row.token_enc is None and "40125" in row.last_error or "40001" in row.last_error
    assert "f" * 32 not in row.last_error


def test_the_scheduled_job_refreshes_ahead_of_expiry(sim_app, simulator):
    from webapp import channel

    with sim_app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET,
                                        "wx_token": "tok123", "wx_template_id": TEMPLATE_NOTIFICATION_ID}), actor="t")
        jobs.refresh_tokens()
        assert simulator.calls("stable_token") == 1
        jobs.refresh_tokens()  # still fresh: nothing to do
        assert simulator.calls("stable_token") == 1
        # As if fetched 114 minutes ago: 6 of its 120 minutes left, inside the refresh-ahead margin.
        with db.transaction() as session:
            session.execute(update(AccessToken).values(fetched_at=utcnow() - timedelta(minutes=114),
                                                       expires_at=utcnow() + timedelta(minutes=6)))
        jobs.refresh_tokens()  # inside the refresh-ahead margin: fetched again
        assert simulator.calls("stable_token") == 2


def _run_workers(database_url, simulator, processes=3, threads=10):
    start_at = time.time() + 4  # time for every process to import and build its app
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.tokens_worker", database_url, simulator.mp_base, str(threads), str(start_at)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    tokens = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and "Traceback" not in err, err
        tokens += out.split()
    return tokens


def test_thirty_callers_in_three_processes_cause_one_fetch(database_url, simulator):
    simulator.control("settings", {"latency_ms": 300})  # a slow WeChat widens the race
    tokens = _run_workers(database_url, simulator)
    assert len(tokens) == 30 and len(set(tokens)) == 1
    assert simulator.calls("stable_token") == 1


@pytest.mark.postgres
def test_thirty_callers_in_three_processes_cause_one_fetch_on_postgresql(postgres_url, simulator):
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    try:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        simulator.control("settings", {"latency_ms": 300})
        tokens = _run_workers(url, simulator)
        assert len(tokens) == 30 and len(set(tokens)) == 1
        assert simulator.calls("stable_token") == 1
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_two_schedulers_running_by_mistake_refresh_once(sim_app, simulator):
    """Two scheduler processes (here: threads with their own app contexts) run the refresh job at once."""
    import threading

    from webapp import channel

    with sim_app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET,
                                        "wx_token": "tok123", "wx_template_id": TEMPLATE_NOTIFICATION_ID}), actor="t")
    simulator.control("settings", {"latency_ms": 300})
    errors = []

    def scheduler_run():
        with sim_app.app_context():
            try:
                jobs.refresh_tokens()
            except Exception as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    runs = [threading.Thread(target=scheduler_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert not errors and simulator.calls("stable_token") == 1


def test_callers_waiting_for_a_failed_fetch_share_its_error(sim_app, simulator):
    """WeChat answers the one fetch slowly, then with 40125 (wrong AppSecret): every caller that
    waited for it gets that error, and WeChat is asked once, not once per waiter."""
    from concurrent.futures import ThreadPoolExecutor

    simulator.control("settings", {"latency_ms": 800})
    simulator.control("faults", {"endpoint": "stable_token", "kind": "errcode", "errcode": 40125, "count": 1})

    def one(_):
        with sim_app.app_context():
            try:
                get_token(_mp_source())
            except WeChatAPIError as exc:
                return exc.errcode
            return None

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(one, range(6)))
    assert codes == [40125] * 6, codes
    assert simulator.calls("stable_token") == 1
