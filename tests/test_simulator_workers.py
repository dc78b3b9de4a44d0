"""The WeChat simulator and several gunicorn workers, with real processes.

The simulator keeps its World in one process's memory, so it must never be served by several
(webapp/simulator/processes.py). These tests check both halves of that rule:

* the documented set-up works end to end: the simulator as one process of its own (the command
  ``make simulator`` runs) and the service under gunicorn with the project's gunicorn.conf.py and
  three workers pointed at it (docs/deployment.md, "The WeChat simulator as a process of its own").
  Sends through every worker share one token fetch and every message reaches the simulated phones;
  the simulator's 服务器配置 form checks the service's callback, pushes reach it, and a QR code scan
  binds a user who then receives a message;
* the in-process simulator under several workers refuses to start, with the sentence (English and
  Chinese) that says what to do; a server started without gunicorn.conf.py answers the simulator's
  routes 503 with the same sentence rather than half-working; adding workers by signal is refused.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.binding_support import browser
from tests.crash_support import PYTHON, ROOT, database, free_port, wait_for  # noqa: F401  (database: a fixture)
from tests.drill_support import MP_CHANNEL, SEND, Senders, Service, child_pids, headers
from tests.gunicorn_support import installations
from webapp.simulator.processes import REFUSAL, STANDALONE_COMMAND
from webapp.simulator.world import OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING

WORKERS = 3
SENDS = 12
CALLBACK = "/console/user_center/weixin/mp/callback/"
ADMIN = ("admin", "granite-harbor-58")
ALICE = ("alice", "violet-orbit-61")
# Distinct parts of the refusal in each language, as the operator reads them on the terminal.
REFUSAL_EN = "run it as one process of its own (make simulator"
REFUSAL_ZH = "请把它作为单独的一个进程运行"


def clean_environment(**values: str) -> dict[str, str]:
    """This process's environment without the service's and gunicorn's settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLASK_", "GUNICORN_")) and k not in ("PROMETHEUS_MULTIPROC_DIR", "RUNTIME_DIRECTORY")}
    env.update(values)
    return env


def make_simulator_command(host: str, port: int, service_port: int) -> tuple[dict[str, str], list[str]]:
    """The variables and command ``make simulator`` runs (read from ``make -n``: the test runs exactly them)."""
    done = subprocess.run(["make", "-n", "simulator", f"HOST={host}", f"PORT={service_port}", f"PORT_SIM={port}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    joined = re.sub(r"\\\n\s*", " ", done.stdout)
    [line] = [line for line in joined.splitlines() if "create_standalone_app" in line]
    words = shlex.split(line)
    variables = {}
    while re.match(r"^[A-Z_]+=", words[0]):
        name, _, value = words.pop(0).partition("=")
        variables[name] = value
    return variables, words


@contextlib.contextmanager
def standalone_simulator(log: Path, service_url: str) -> tuple[str, subprocess.Popen]:
    """The simulator as one process of its own, started as ``make simulator`` starts it; killed afterwards."""
    port, service_port = free_port(), int(service_url.rsplit(":", 1)[1])
    variables, command = make_simulator_command("127.0.0.1", port, service_port)
    # The Makefile tells the simulator where the service is, from HOST and PORT.
    assert variables == {"FLASK_SIMULATOR_SERVICE_URL": service_url}, variables
    env = clean_environment(**variables)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        assert process.poll() is None, f"the simulator exited:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(requests.RequestException):
            return requests.get(base + "/simulator/_control/version", timeout=2).status_code == 200
        return False

    try:
        wait_for(up, 60, 0.1, "the standalone simulator to answer")
        yield base, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def serve_with_project_config(service: Service, port: int, workers: int) -> str:
    """Serve ``service`` as docs/deployment.md does: ``gunicorn -c gunicorn.conf.py wsgi:app``, with its
    workers set by ``GUNICORN_WORKERS``; return the base URL once every worker is up."""
    log = open(service.log_dir / "service-1.log", "wb")
    env = {**service.env, "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": "4",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(service.log_dir / "prometheus")}
    env.pop("RUNTIME_DIRECTORY", None)
    service.process = subprocess.Popen([PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                                       env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    service.base = f"http://127.0.0.1:{port}"

    def healthy():
        assert service.process.poll() is None, f"the service exited:\n{service.log()}"
        with contextlib.suppress(requests.RequestException):
            return requests.get(service.base + "/healthz", timeout=2).status_code == 200
        return False

    wait_for(healthy, 60, 0.1, "the service to answer /healthz")
    wait_for(lambda: len(service.workers()) == workers, 30, 0.1, f"{workers} workers")
    return service.base




def sim(base: str, path: str, payload=None, method: str = "POST"):
    """Call the simulator's control API; return its JSON."""
    answer = requests.request(method, f"{base}/simulator/_control/{path}", json=payload, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_several_workers_share_one_standalone_simulator(database, tmp_path):
    service_port = free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    with standalone_simulator(tmp_path / "simulator.log", service_url) as (sim_base, _), \
            installations(Service, database, sim_base, tmp_path, SCHEDULER_ENABLED=False, PUBLIC_URL=service_url,
                          WEIXIN_QY_LOGIN_URL=sim_base + "/simulator/qy/login",
                          WEIXIN_QY_OAUTH_URL=sim_base + "/simulator/qy/oauth2/authorize",
                          DATABASE_POOL_SIZE=4, DATABASE_MAX_OVERFLOW=4) as make:
        svc = make()
        assert svc.env["FLASK_WEIXIN_SIMULATOR"] == "false"
        secret = svc.install(MP_CHANNEL, app_code="drill")
        svc.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--admin")
        svc.cli("create-user", ALICE[0], "--password", ALICE[1])
        base = serve_with_project_config(svc, service_port, WORKERS)
        assert base == service_url

        # The simulator knows where the service is: its forms suggest the service's callback URLs, and
        # its WeCom application trusts the service's host (WeCom sends people back only there).
        page = requests.get(sim_base + "/simulator/", timeout=10).text
        assert f'placeholder="{service_url}{CALLBACK}"' in page
        assert f'placeholder="{service_url}/console/user_center/weixin/qy/callback/"' in page
        qy_apps = sim(sim_base, "world", method="GET")["qy"]["apps"]
        assert {app["redirect_domain"] for app in qy_apps} == {f"127.0.0.1:{service_port}"}

        # 1. Sends through every worker at once: one token fetch, every message on the phones.
        followers = [OPENID_ALICE, OPENID_BOB]
        for number in range(4):
            openid = f"oWorkers{number:020d}"
            sim(sim_base, "mp/users", {"openid": openid, "nickname": f"w{number}", "following": True})
            followers.append(openid)
        senders = Senders(base, secret, followers, per_message=2)
        barrier = threading.Barrier(SENDS)

        def one(_):
            barrier.wait(timeout=60)
            with requests.Session() as session:  # a fresh connection each: gunicorn spreads them
                return senders.post_one(session)

        with ThreadPoolExecutor(SENDS) as pool:
            records = list(pool.map(one, range(SENDS)))
        bad = [r for r in records if r["status"] != 200 or not (r.get("answer") or {}).get("result")
               or {d["status"] for d in r["answer"]["data"]["deliveries"]} != {"sent"}]
        assert not bad, f"{len(bad)} of {SENDS} sends were not all 'sent', e.g. {bad[:2]}\n{svc.log()}"
        stats = sim(sim_base, "stats", method="GET")
        fetches = stats["calls"].get("stable_token", 0) + stats["calls"].get("token", 0)
        assert fetches == 1, f"{fetches} token fetches for {WORKERS} workers: {stats['calls']}"
        delivered = sim(sim_base, "messages?channel=mp", method="GET")["messages"]
        received = {(m["to"], value) for m in delivered for value in _values(m)}
        expected = {(openid, r["tag"]) for r in records for openid in r["receivers"]}
        assert expected <= received, f"missing on the phones: {sorted(expected - received)[:5]}"
        assert len(delivered) == SENDS * 2
        assert not svc.logs_containing("40001", "Traceback"), svc.logs_containing("40001", "Traceback")

        # 2. The simulator's 服务器配置 form: WeChat's signed URL check reaches a worker and passes.
        form = {"url": service_url + CALLBACK, "token": MP_CHANNEL["wx_token"], "encoding_aes_key": "",
                "mode": "plain", "enabled": "on"}
        answer = requests.post(sim_base + "/simulator/panel/server", data=form, timeout=30, allow_redirects=False)
        assert answer.status_code == 303, answer.text
        server = sim(sim_base, "mp/server", method="GET")
        assert server["last_check"]["ok"] is True, server["last_check"]
        assert server["server"]["url"] == service_url + CALLBACK and server["server"]["enabled"]
        # A follower's text message is pushed to the callback and answered.
        pushed = sim(sim_base, "mp/phone/text", {"openid": OPENID_BOB, "content": "hello from a phone"})
        assert pushed["outcome"] in ("success", "reply"), pushed

        # 3. Binding by QR code: the service asks the simulator for the code, the simulated phone
        # scans it, the simulator pushes the scan to the service, and alice is bound.
        alice = browser(base, *ALICE)
        code = alice.get(base + "/console/user_center/weixin/mp/get_qrcode/", timeout=30).json()["data"]
        scanned = sim(sim_base, "mp/scan", {"openid": OPENID_NOT_FOLLOWING, "url": code["url"]})
        assert scanned["event"] == "subscribe" and "Bound" in (scanned["shown"] or ""), scanned
        status = alice.get(base + "/console/user_center/weixin/get_bind_status/", params={"scene": code["scene"]},
                           timeout=10).json()
        assert status["result"] is True and status["data"]["attempt"]["state"] == "bound", status
        # She now receives notifications sent to her user name, whichever worker takes the call.
        sent = requests.post(base + SEND, headers=headers(secret), timeout=60,
                             json={"receiver__username": "alice", "data": {"heading": "Bound", "message": "w-bound"}})
        assert sent.status_code == 200 and sent.json()["result"], sent.text
        assert {d["status"] for d in sent.json()["data"]["deliveries"]} == {"sent"}, sent.text
        mine = sim(sim_base, f"messages?channel=mp&to={OPENID_NOT_FOLLOWING}", method="GET")["messages"]
        assert any("w-bound" in _values(m) for m in mine), mine
        stats = sim(sim_base, "stats", method="GET")
        assert stats["calls"].get("stable_token", 0) + stats["calls"].get("token", 0) == 1, stats["calls"]


def _values(message: dict) -> list[str]:
    """The texts of a delivered template message's fields."""
    data = message.get("data") or {}
    return [str(field.get("value") if isinstance(field, dict) else field) for field in data.values()]


# --- the in-process simulator and several workers --------------------------------------------------

def gunicorn(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen:
    """gunicorn in the project folder, in its own process group, its output in tmp_path/gunicorn.log."""
    environment = clean_environment(FLASK_DATABASE_URL=f"sqlite:///{tmp_path / 'service.sqlite3'}",
                                    FLASK_SECRET_KEY="simulator-workers-test",
                                    PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"), **env)
    with open(tmp_path / "gunicorn.log", "wb") as log:
        return subprocess.Popen([PYTHON, "-m", "gunicorn", *args], cwd=ROOT, env=environment, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


@contextlib.contextmanager
def killed_afterwards(process: subprocess.Popen):
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def assert_refused(process: subprocess.Popen, tmp_path: Path) -> str:
    """The server exits at once with status 1, having printed the refusal in both languages."""
    with killed_afterwards(process):
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("gunicorn started although the simulator would have several processes") from None
    output = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert code == 1, output
    assert REFUSAL in output and REFUSAL_EN in output and REFUSAL_ZH in output, output
    assert STANDALONE_COMMAND in output, output
    assert "Booting worker" not in output, output  # refused before any worker started
    return output


@pytest.mark.parametrize("how", ["GUNICORN_WORKERS", "--workers"])
def test_two_workers_with_the_in_process_simulator_refuse_to_start(tmp_path, how):
    port = free_port()
    args = ["-c", "gunicorn.conf.py", "wsgi:app"]
    env = {"FLASK_WEIXIN_SIMULATOR": "true", "GUNICORN_BIND": f"127.0.0.1:{port}"}
    if how == "--workers":
        args = ["-c", "gunicorn.conf.py", "--workers", "2", "wsgi:app"]
    else:
        env["GUNICORN_WORKERS"] = "2"
    assert_refused(gunicorn(tmp_path, *args, **env), tmp_path)
    with pytest.raises(requests.ConnectionError):  # nothing listens: the refusal came before the bind
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_the_simulator_switched_on_in_instance_config_is_seen_too(tmp_path):
    """gunicorn reads the setting where the service reads it: an instance/config.py counts as well."""
    from webapp.simulator.processes import enabled_in_service, refusal

    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("WEIXIN_SIMULATOR = True\n")
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k == "FLASK_WEIXIN_SIMULATOR"}
    try:
        assert enabled_in_service(str(instance)) is True
        assert refusal(2, "wsgi:app", str(instance)) == REFUSAL
        assert refusal(1, "wsgi:app", str(instance)) is None
        (instance / "config.py").write_text("WEIXIN_SIMULATOR = False\n")
        assert refusal(4, "wsgi:app", str(instance)) is None
        assert refusal(2, "webapp.simulator:create_standalone_app()", str(instance)) == REFUSAL
    finally:
        os.environ.update(saved)


def test_the_standalone_simulator_under_two_workers_refuses_to_start(tmp_path):
    port = free_port()
    process = gunicorn(tmp_path, "-c", "gunicorn.conf.py", "webapp.simulator:create_standalone_app()",
                       GUNICORN_WORKERS="2", GUNICORN_BIND=f"127.0.0.1:{port}")
    assert_refused(process, tmp_path)


def test_one_worker_serves_the_in_process_simulator_and_keeps_one(tmp_path):
    """One worker starts and serves the simulator; a TTIN signal asking for a second is refused."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = gunicorn(tmp_path, "-c", "gunicorn.conf.py", "wsgi:app", FLASK_WEIXIN_SIMULATOR="true",
                       GUNICORN_WORKERS="1", GUNICORN_BIND=f"127.0.0.1:{port}")
    log = tmp_path / "gunicorn.log"
    with killed_afterwards(process):
        def up():
            assert process.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(requests.RequestException):
                return requests.get(base + "/simulator/_control/version", timeout=2).status_code == 200
            return False

        wait_for(up, 60, 0.1, "gunicorn with one worker to serve the simulator")
        token = requests.get(base + "/simulator/mp/cgi-bin/token", timeout=10, params={
            "grant_type": "client_credential", "appid": MP_CHANNEL["wx_app_id"], "secret": MP_CHANNEL["wx_secret"]})
        assert "access_token" in token.json(), token.text
        os.kill(process.pid, signal.SIGTTIN)
        wait_for(lambda: "Keeping 1 worker" in log.read_text(errors="replace"), 20, 0.1, "the TTIN refusal")
        output = log.read_text(errors="replace")
        assert REFUSAL in output, output
        time.sleep(2)  # a second worker, had one been started, would be booting by now
        assert len(child_pids(process.pid)) == 1, output
        assert output.count("Booting worker") == 1, output


def test_a_server_without_the_project_config_answers_the_simulator_503(tmp_path):
    """Started around gunicorn.conf.py (another config file, two workers), the service still works but
    the simulator does not half-work: each of its routes answers 503 with the sentence."""
    port = free_port()
    empty = tmp_path / "empty.conf.py"
    empty.write_text("")
    base = f"http://127.0.0.1:{port}"
    subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "init-db"], cwd=ROOT, check=True, capture_output=True,
                   env=clean_environment(FLASK_DATABASE_URL=f"sqlite:///{tmp_path / 'service.sqlite3'}",
                                         FLASK_SECRET_KEY="simulator-workers-test"), timeout=60)
    process = gunicorn(tmp_path, "-c", str(empty), "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app",
                       FLASK_WEIXIN_SIMULATOR="true", FLASK_SCHEDULER_ENABLED="false")
    with killed_afterwards(process):
        def up():
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text(errors="replace")
            with contextlib.suppress(requests.RequestException):
                return requests.get(base + "/healthz", timeout=2).status_code == 200
            return False

        wait_for(up, 60, 0.1, "gunicorn to answer /healthz")
        assert requests.get(base + "/login", timeout=10).status_code == 200  # the service itself works
        for path in ("/simulator/", "/simulator/_control/stats",
                     "/simulator/mp/cgi-bin/token?grant_type=client_credential&appid=x&secret=y"):
            answer = requests.get(base + path, timeout=10)
            assert answer.status_code == 503, (path, answer.status_code, answer.text[:300])
            assert REFUSAL in answer.text and REFUSAL_ZH in answer.text
        assert re.search(r"^text/plain", answer.headers["Content-Type"])
