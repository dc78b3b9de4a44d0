"""``/metrics``: the Prometheus text format, what moves the counters, who may read it, and gunicorn's workers."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.api_support import mp, service, sim  # noqa: F401  (fixtures)
from tests.binding_support import CALLBACK, TOKEN
from tests.crash_support import free_port, wait_for
from webapp import channel, heartbeat, jobs
from webapp.delivery import engine
from webapp.delivery.content import Notification
from webapp.extensions import db
from webapp.models import Delivery
from webapp.simulator.world import OPENID_ALICE, OPENID_NOT_FOLLOWING
from webapp.wechat import sign

ROOT = Path(__file__).resolve().parent.parent
BODY = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}


def scrape(get) -> dict:
    """Scrape with ``get(path)`` and return {(sample name, sorted labels): value}; fails on a malformed answer."""
    answer = get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def http_get(base: str):
    return lambda path: requests.get(base + path, timeout=10)


# --- the format and the access rules ----------------------------------------------------------------

def test_metrics_parse_and_name_every_family(client, users):
    client.get("/healthz")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(answer.text)}
    for name in ("weixin_deliveries", "weixin_token_fetches", "weixin_token_fetch_failures", "weixin_callback_requests",
                 "weixin_http_request_duration_seconds", "weixin_queue_deliveries", "weixin_queue_oldest_age_seconds",
                 "weixin_scheduler_heartbeat_age_seconds", "weixin_database_up"):
        assert name in families, name
    samples = scrape(client.get)
    assert value(samples, "weixin_database_up") == 1
    assert value(samples, "weixin_queue_deliveries", state="queued") == 0
    assert value(samples, "weixin_http_request_duration_seconds_count", endpoint="home.healthz", method="GET",
                 status_class="2xx") >= 1
    # Paths never become labels: a 404 is counted under the endpoint "none".
    before = value(samples, "weixin_http_request_duration_seconds_count", endpoint="none", method="GET", status_class="4xx")
    client.get(f"/no/such/page/{uuid.uuid4().hex}")
    after = scrape(client.get)
    assert value(after, "weixin_http_request_duration_seconds_count", endpoint="none", method="GET",
                 status_class="4xx") == before + 1
    assert not any("no/such" in str(labels) for _, labels in after)


def test_a_client_outside_the_allowed_networks_is_refused(client):
    answer = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert answer.status_code == 403
    assert answer.mimetype == "text/plain"
    assert "METRICS_ALLOW_FROM" in answer.text and "weixin_" not in answer.text
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_the_bearer_token_admits_any_address(make_app):
    app = make_app(METRICS_TOKEN="scrape-token-3f9a")
    client = app.test_client()
    outside = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer scrape-token-3f9a"}).status_code == 200
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", environ_base=outside, headers={"Authorization": "Basic scrape-token-3f9a"}).status_code == 403
    assert client.get("/metrics", environ_base=outside).status_code == 403


def test_allowed_networks_are_configurable(make_app):
    client = make_app(METRICS_ALLOW_FROM=["10.0.0.0/8"]).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403
    # From the environment the value may also be one string of CIDRs.
    client = make_app(METRICS_ALLOW_FROM="192.168.0.0/16, 10.1.2.3").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.4"}).status_code == 403


def test_an_invalid_network_stops_the_start(make_app):
    with pytest.raises(ValueError, match="METRICS_ALLOW_FROM"):
        make_app(METRICS_ALLOW_FROM=["10.0.0.0/33"])


def test_behind_a_proxy_the_forwarded_address_counts(make_app):
    client = make_app(PROXY_COUNT=1).test_client()
    # The proxy (127.0.0.1) forwards for an outside client: the client's address decides.
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_metrics_answer_before_first_run_set_up(client):
    # No administrator exists yet: pages lead to /setup/, but monitoring must not be redirected.
    assert client.get("/metrics").status_code == 200


# --- what moves the counters ------------------------------------------------------------------------

def test_sends_and_token_fetches_are_counted(mp):
    app, base, api = mp
    before = scrape(http_get(base))
    assert api.send(BODY).json()["data"]["deliveries"][0]["status"] == "sent"
    failed = api.send({"receiver": OPENID_NOT_FOLLOWING, "data": BODY["data"]}).json()["data"]["deliveries"][0]
    assert failed["status"] == "failed" and failed["errcode"] == 43004
    after = scrape(http_get(base))
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("weixin_deliveries_total", channel="mp", status="sent", errcode="0") == 1
    assert delta("weixin_deliveries_total", channel="mp", status="failed", errcode="43004") == 1
    assert delta("weixin_token_fetches_total", channel="mp") == 1  # one token, used by both sends
    assert delta("weixin_http_request_duration_seconds_count", endpoint="api.send_weixin", method="POST",
                 status_class="2xx") == 2


def test_transient_failures_and_token_failures_are_counted(mp):
    app, base, api = mp
    before = scrape(http_get(base))
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": -1, "count": 1})
    assert api.send(BODY).json()["data"]["deliveries"][0]["status"] == "queued"
    # The token is revoked, so the next send needs a new one, and WeChat refuses it (IP not whitelisted).
    sim(base, "tokens/invalidate", {"channel": "mp"})
    sim(base, "faults", {"endpoint": "stable_token", "kind": "errcode", "errcode": 40164, "count": 1})
    api.send(BODY)
    after = scrape(http_get(base))
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("weixin_deliveries_total", channel="mp", status="retrying", errcode="-1") == 1
    assert delta("weixin_token_fetch_failures_total", channel="mp", errcode="40164") >= 1
    assert delta("weixin_token_fetches_total", channel="mp") >= 1
    # One delivery waits for its retry.
    assert value(after, "weixin_queue_deliveries", state="retrying") >= 1


def test_callback_outcomes_are_counted(mp):
    app, base, api = mp
    with app.app_context():  # plaintext mode: the test signs requests as WeChat would
        channel.save(channel.normalize({**_mp_config(app), "wx_encrypt_mode": "plain"}), actor="test")
    before = scrape(http_get(base))
    now = str(int(time.time()))
    xml = (f"<xml><ToUserName>gh_x</ToUserName><FromUserName>{OPENID_ALICE}</FromUserName><CreateTime>{now}</CreateTime>"
           "<MsgType>text</MsgType><Content>hi</Content><MsgId>{msgid}</MsgId></xml>")

    def post(nonce, body, timestamp=now, token=TOKEN):
        params = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        return requests.post(base + CALLBACK, params=params, data=body.encode(), timeout=10)

    assert post("n1", xml.format(msgid=1001)).status_code == 200  # ok
    assert post("n1", xml.format(msgid=1001)).status_code == 403  # the same nonce again: a replay
    assert post("n2", xml.format(msgid=1001)).status_code == 200  # WeChat's retry: a duplicate
    assert post("n3", xml.format(msgid=1002), token="WrongToken1").status_code == 403
    assert post("n4", xml.format(msgid=1003), timestamp=str(int(time.time()) - 3600)).status_code == 403
    assert post("n5", "not xml at all").status_code == 400
    push = sim(base, "mp/phone/text", {"openid": OPENID_ALICE, "content": "hello"})  # the simulated phone
    assert push["outcome"] in ("success", "reply"), push
    after = scrape(http_get(base))
    delta = lambda outcome: (value(after, "weixin_callback_requests_total", method="POST", outcome=outcome)  # noqa: E731
                             - value(before, "weixin_callback_requests_total", method="POST", outcome=outcome))
    assert delta("ok") == 2
    assert delta("replayed_nonce") == 1
    assert delta("duplicate") == 1
    assert delta("bad_signature") == 1
    assert delta("stale_timestamp") == 1
    assert delta("malformed") == 1


def _mp_config(app) -> dict:
    """The stored Official Account configuration, as configuration keys."""
    with app.app_context():
        configured = channel.load()
    return {"wx_type": "mp", "wx_app_id": configured.wx_app_id, "wx_secret": configured.wx_secret,
            "wx_token": configured.wx_token, "wx_encoding_aes_key": configured.wx_encoding_aes_key,
            "wx_template_id": configured.wx_template_id}


def test_queue_gauges_reflect_waiting_deliveries(mp):
    app, base, api = mp
    with app.app_context():
        configured = channel.load()
        engine.accept(api_app_id=None, request_id=uuid.uuid4().hex, configured=configured,
                      notification=Notification(heading="h", message="m"),
                      targets=[engine.Target(OPENID_ALICE), engine.Target(OPENID_NOT_FOLLOWING)])
        db.session.remove()
    time.sleep(1.1)  # so that the oldest one is measurably old
    samples = scrape(http_get(base))
    assert value(samples, "weixin_queue_deliveries", state="queued") == 2
    assert value(samples, "weixin_queue_deliveries", state="retrying") == 0
    assert value(samples, "weixin_queue_oldest_age_seconds") >= 1
    # The retry job sends them; the queue empties.
    with app.app_context():
        db.session.execute(update(Delivery).values(claimed_until=None))
        db.session.commit()
        jobs.deliver_due()
    samples = scrape(http_get(base))
    assert value(samples, "weixin_queue_deliveries", state="queued") == 0
    assert value(samples, "weixin_queue_oldest_age_seconds") == 0


def test_the_scheduler_heartbeat_is_a_gauge_and_in_healthz(app, client):
    assert ("weixin_scheduler_heartbeat_age_seconds", ()) not in scrape(client.get)
    assert client.get("/healthz").json["scheduler"]["status"] == "never"
    with app.app_context():
        heartbeat.beat()
        heartbeat.beat()  # the second beat updates the row
    assert 0 <= value(scrape(client.get), "weixin_scheduler_heartbeat_age_seconds") < 5
    health = client.get("/healthz").json
    assert health["scheduler"]["status"] == "ok" and health["scheduler"]["last_heartbeat_age_seconds"] < 5
    assert health["status"] == "ok"


def test_a_standalone_scheduler_is_seen_by_the_web_workers(make_app, database_url, tmp_path):
    """`flask --app wsgi scheduler` in its own process: web workers without a scheduler see its heartbeat."""
    web = make_app(SCHEDULER_HEARTBEAT_STALE_SECONDS=2).test_client()
    assert web.get("/healthz").json["scheduler"]["status"] == "never"
    env = {**os.environ, "FLASK_DATABASE_URL": database_url, "FLASK_SECRET_KEY": "metrics-test-secret-key",
           "FLASK_SCHEDULER_HEARTBEAT_SECONDS": "1"}
    env.pop("FLASK_APP", None)
    scheduler = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        health = wait_for(lambda: (lambda h: h if h["scheduler"]["status"] == "ok" else None)(web.get("/healthz").json),
                          30, 0.1, "the scheduler's first heartbeat")
        assert health["scheduler"]["in_process"] is False and health["scheduler"]["state"] == "external"
        assert health["status"] == "ok"
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=20)
    # Stopped: the heartbeat ages until it is stale, and the service says it is degraded (still 200).
    answer = wait_for(lambda: (lambda a: a if a.json["scheduler"]["status"] == "stale" else None)(web.get("/healthz")),
                      10, 0.2, "the heartbeat to go stale")
    assert answer.status_code == 200 and answer.json["status"] == "degraded"


def test_metrics_without_a_database_say_so(make_app, tmp_path):
    broken = tmp_path / "not-a-database.sqlite3"
    broken.write_bytes(b"this is not sqlite" * 100)
    samples = scrape(make_app(DATABASE_URL=f"sqlite:///{broken}").test_client().get)
    assert value(samples, "weixin_database_up") == 0


# --- several gunicorn workers -----------------------------------------------------------------------

def test_gunicorn_workers_are_added_up(database_url, tmp_path):
    """Two workers serve; one scrape reports what both served (the client's multiprocess mode)."""
    port = free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "counter_999999.db").write_bytes(b"left over by a previous server")
    env = {**os.environ,
           "FLASK_DATABASE_URL": database_url, "FLASK_SECRET_KEY": "metrics-test-secret-key",
           "FLASK_SCHEDULER_ENABLED": "false", "FLASK_WEIXIN_SIMULATOR": "false",
           "PROMETHEUS_MULTIPROC_DIR": str(prom_dir), "GUNICORN_WORKERS": "2", "GUNICORN_BIND": f"127.0.0.1:{port}"}
    env.pop("FLASK_APP", None)
    log = open(tmp_path / "gunicorn.log", "wb")
    # The project's gunicorn.conf.py (its hooks prepare the folder); sync workers take one request at a
    # time, so concurrent requests are spread over both.
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--worker-class", "sync",
                                "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                return requests.get(base + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 30, 0.1, "gunicorn to answer")
        assert not (prom_dir / "counter_999999.db").exists()  # on_starting emptied the folder
        healthz = dict(endpoint="home.healthz", method="GET", status_class="2xx")
        # Counted from a first scrape: a start-up probe that timed out on our side may still have been served.
        served = value(scrape(http_get(base)), "weixin_http_request_duration_seconds_count", **healthz)
        pids = set()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for _ in range(20):  # until both workers have served (almost always the first round)
                list(pool.map(lambda _: requests.get(base + "/healthz", timeout=10).raise_for_status(), range(16)))
                served += 16
                pids = {path.stem.rsplit("_", 1)[1] for path in prom_dir.glob("histogram_*.db")}
                if len(pids) >= 2:
                    break
        assert len(pids) >= 2, f"one worker served everything: {pids}"
        samples = scrape(http_get(base))
        assert value(samples, "weixin_http_request_duration_seconds_count", **healthz) == served
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.mark.postgres
def test_database_figures_on_postgresql(postgres_url, make_app):
    """The scrape-time queries and the heartbeat's upsert, on PostgreSQL."""
    from tests.crash_support import postgres_schema
    from webapp import migrate
    from webapp.database import make_engine

    with postgres_schema(postgres_url) as url:
        schema_engine = make_engine(url)
        migrate.upgrade(schema_engine)
        schema_engine.dispose()
        app = make_app(DATABASE_URL=url)
        with app.app_context():
            channel.save(channel.normalize({"wx_type": "qywx", "wx_qy_corpid": "ww0123456789abcdef", "wx_qy_corpsecret": "s" * 43,
                                            "wx_qy_agentid": 1000002}), actor="test")
            configured = channel.load()
            engine_message = engine.accept(api_app_id=None, request_id=uuid.uuid4().hex, configured=configured,
                                           notification=Notification(heading="h", message="m"),
                                           targets=[engine.Target("zhangsan"), engine.Target("lisi")])
            db.session.execute(update(Delivery).where(Delivery.message_id == engine_message.id, Delivery.receiver == "lisi")
                               .values(attempts=1))
            db.session.commit()
            heartbeat.beat()
            heartbeat.beat()
            db.session.remove()
        client = app.test_client()
        samples = scrape(client.get)
        assert value(samples, "weixin_queue_deliveries", state="queued") == 1
        assert value(samples, "weixin_queue_deliveries", state="retrying") == 1
        assert 0 <= value(samples, "weixin_scheduler_heartbeat_age_seconds") < 5
        health = client.get("/healthz").json
        assert health["scheduler"]["status"] == "ok"
        assert health["tokens"] == {"qywx": {"status": "missing", "fresh": False, "expires_in_seconds": None,
                                             "last_fetch_failed": False, "last_error_code": None}}
        app.extensions["database"].engine.dispose()


def test_a_standalone_scheduler_serves_its_own_counters(mp, tmp_path):
    """`scheduler --metrics-address`: what the scheduler delivers is counted where Prometheus can read it."""
    app, base, api = mp
    with app.app_context():
        engine.accept(api_app_id=None, request_id=uuid.uuid4().hex, configured=channel.load(),
                      notification=Notification(heading="h", message="m"), targets=[engine.Target(OPENID_ALICE)])
        db.session.execute(update(Delivery).values(claimed_until=None))
        db.session.commit()
        db.session.remove()
    port = free_port()
    env = {**os.environ, "FLASK_DATABASE_URL": app.config["DATABASE_URL"], "FLASK_SECRET_KEY": app.config["SECRET_KEY"],
           "FLASK_WEIXIN_MP_API_BASE": base + "/simulator/mp", "FLASK_DELIVERY_JOB_SECONDS": "1"}
    for name in ("FLASK_APP", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    output = open(tmp_path / "scheduler.log", "wb")
    scheduler = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "scheduler",
                                  "--metrics-address", f"127.0.0.1:{port}"],
                                 cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    output.close()
    try:
        def delivered():
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            try:
                samples = scrape(http_get(f"http://127.0.0.1:{port}"))
            except requests.ConnectionError:
                return None
            return samples if value(samples, "weixin_deliveries_total", channel="mp", status="sent", errcode="0") else None

        samples = wait_for(delivered, 60, 0.3, "the scheduler to deliver and count the queued message")
        assert value(samples, "weixin_deliveries_total", channel="mp", status="sent", errcode="0") == 1
        # The database gauges are the web workers' to report; the scheduler does not repeat them.
        assert not any(name == "weixin_queue_deliveries" for name, _ in samples)
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=20)


def test_a_malformed_scheduler_metrics_address_is_refused(runner):
    result = runner.invoke(args=["scheduler", "--metrics-address", "9101"])
    assert result.exit_code != 0 and "HOST:PORT" in result.output
