"""The deployment files in ``deploy/`` and ``gunicorn.conf.py``, checked with the real tools.

* ``nginx -t`` on both nginx files, and a real nginx (both files in one server, on high ports) in
  front of the service under gunicorn with ``gunicorn.conf.py``: the simulated WeChat verifies the
  server URL and pushes encrypted messages through the forwarding server and the service's proxy,
  and answers carry https URLs built from X-Forwarded-Proto.
* ``systemd-analyze verify`` on the units, the ``deploy/weixin-notify`` wrapper, ``deploy/env.example``.

The nginx and systemd tests are skipped when the tool is missing (``apt-get install nginx-light``).
"""
from __future__ import annotations

import contextlib
import datetime
import glob
import ipaddress
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select

from tests.crash_support import free_port, wait_for
from tests.livesrv import serve
from webapp.config import Defaults
from webapp.models import CallbackEvent
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, TEMPLATE_NOTIFICATION_ID

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MAIN_CONF = DEPLOY / "nginx" / "weixin-notify.conf"
FORWARDING_CONF = DEPLOY / "nginx" / "forwarding-server.conf"
CALLBACK = "/console/user_center/weixin/mp/callback/"
TOKEN = "DeployToken2026"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SECRET_KEY = "deploy-test-secret-key-not-for-production"
NAME = "notify.example.com"


def nginx_binary() -> str:
    """The nginx program, or skip: these tests need Debian's nginx (apt-get install nginx-light)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if not found:
        pytest.skip("nginx is not installed: `apt-get install nginx-light` to test the nginx files")
    return found


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for notify.example.com, www.example.com and 127.0.0.1: (cert, key) paths.

    It is its own CA too, so the forwarding server can verify the service's nginx with it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(NAME), x509.DNSName("www.example.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def adapted(path: Path, replacements: dict[str, str]) -> str:
    """The text of a deployment file with test values put in; each replaced text must be there."""
    text = path.read_text()
    for old, new in replacements.items():
        assert old in text, f"{path.name} no longer contains {old!r}: update this test with the file"
        text = text.replace(old, new)
    return text


def tls_paths(cert: str, key: str) -> dict[str, str]:
    """Certificate paths of both files, pointed at the test certificate."""
    return {
        "/etc/ssl/weixin-notify/fullchain.pem": cert, "/etc/ssl/weixin-notify/privkey.pem": key,
        "/etc/ssl/www.example.com/fullchain.pem": cert, "/etc/ssl/www.example.com/privkey.pem": key,
        "/etc/ssl/certs/ca-certificates.crt": cert,
    }


def nginx_conf(folder: Path, sites: dict[str, str]) -> Path:
    """A main nginx.conf in ``folder`` that includes the given site files, keeping every file in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    includes = []
    for name, text in sites.items():
        # The shipped files log into /var/log/nginx/; a test's nginx keeps its logs in its folder.
        (folder / name).write_text(text.replace("/var/log/nginx/", f"{folder}/"))
        includes.append(f"    include {folder / name};")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / sub).mkdir(exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text("\n".join([
        # As root, workers would otherwise run as nobody and could not read pytest's private folders.
        "user root;" if os.geteuid() == 0 else "",
        "worker_processes 1;",
        "daemon off;",
        f"pid {folder / 'nginx.pid'};",
        f"error_log {folder / 'error.log'} warn;",
        "events { worker_connections 128; }",
        "http {",
        f"    access_log {folder / 'access.log'};",
        *(f"    {sub}_temp_path {folder / sub.replace('client_body', 'body')};" for sub in
          ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
        *includes,
        "}",
    ]) + "\n")
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on a main configuration file."""
    return subprocess.run([nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
                          capture_output=True, text=True, timeout=30)


# --- nginx -t -------------------------------------------------------------------------------------

def test_both_nginx_files_pass_nginx_t(tmp_path, certificate):
    """The files as shipped (only the certificate paths point at a test certificate)."""
    nginx_binary()
    cert, key = certificate
    paths = tls_paths(cert, key)
    main = adapted(MAIN_CONF, {k: v for k, v in paths.items() if "weixin-notify/" in k})
    forwarding = adapted(FORWARDING_CONF, {k: v for k, v in paths.items() if "weixin-notify/" not in k})
    done = nginx_test(nginx_conf(tmp_path / "nginx", {"weixin-notify.conf": main, "forwarding-server.conf": forwarding}))
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr


def test_nginx_t_notices_a_broken_file(tmp_path, certificate):
    """The check above can fail: a file with a typo is refused."""
    nginx_binary()
    cert, key = certificate
    broken = adapted(MAIN_CONF, {**{k: v for k, v in tls_paths(cert, key).items() if "weixin-notify/" in k},
                                 "client_max_body_size 1m;": "client_max_body_sise 1m;"})
    done = nginx_test(nginx_conf(tmp_path / "nginx", {"weixin-notify.conf": broken}))
    assert done.returncode != 0 and "client_max_body_sise" in done.stderr


def test_metrics_are_refused_outside_the_monitoring_network(tmp_path, certificate):
    """Without the loopback among the allowed addresses, nginx itself answers 403 (no service needed)."""
    cert, key = certificate
    port = free_port()
    main = adapted(MAIN_CONF, {
        **{k: v for k, v in tls_paths(cert, key).items() if "weixin-notify/" in k},
        "allow 127.0.0.1;": "", "allow ::1;": "",
        "listen 80;": f"listen 127.0.0.1:{free_port()};", "listen [::]:80;": "",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;", "listen [::]:443 ssl;": "",
    })
    conf = nginx_conf(tmp_path / "nginx", {"weixin-notify.conf": main})
    process = subprocess.Popen([nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def answer():
            assert process.poll() is None, (conf.parent / "error.log").read_text()
            with contextlib.suppress(requests.ConnectionError):
                return requests.get(f"https://127.0.0.1:{port}/metrics", headers={"Host": NAME}, verify=cert,
                                    timeout=5).status_code
        assert wait_for(answer, 15, 0.1, "nginx") == 403
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_nginx_accepts_bodies_as_large_as_the_service_does():
    assert "client_max_body_size 1m;" in MAIN_CONF.read_text()
    assert Defaults.MAX_CONTENT_LENGTH == 1024 * 1024


# --- the service behind both nginx files ----------------------------------------------------------

class Stack:
    """The service under gunicorn (gunicorn.conf.py) behind nginx with both deployment files."""

    def __init__(self, folder: Path, simulator_base: str, certificate: tuple[str, str], other_app_port: int):
        self.folder = folder
        self.database_url = f"sqlite:///{folder / 'weixin.sqlite3'}"
        self.metrics_dir = folder / "prometheus"
        self.gunicorn_port, self.http_port, self.https_port, self.forwarder_port = (free_port() for _ in range(4))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("FLASK_", "GUNICORN_"))}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("RUNTIME_DIRECTORY", None)
        # FLASK_SCHEDULER_ENABLED is left out on purpose: gunicorn.conf.py must turn it off.
        env.update({
            "FLASK_DATABASE_URL": self.database_url, "FLASK_SECRET_KEY": SECRET_KEY, "FLASK_PROXY_COUNT": "1",
            "FLASK_WEIXIN_MP_API_BASE": simulator_base + "/simulator/mp",
            "FLASK_WEIXIN_QY_API_BASE": simulator_base + "/simulator/qy",
            "GUNICORN_BIND": f"127.0.0.1:{self.gunicorn_port}", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2",
            # The folder gunicorn.conf.py would pick (instance/) is shared by every run in this checkout.
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        })
        self.env = env
        cert, key = certificate
        paths = tls_paths(cert, key)
        self.main = adapted(MAIN_CONF, {
            **{k: v for k, v in paths.items() if "weixin-notify/" in k},
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{self.gunicorn_port};",
            "listen 80;": f"listen 127.0.0.1:{self.http_port};", "listen [::]:80;": "",
            "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;", "listen [::]:443 ssl;": "",
        })
        self.forwarding = adapted(FORWARDING_CONF, {
            **{k: v for k, v in paths.items() if "weixin-notify/" not in k},
            "server 10.0.0.20:443;": f"server 127.0.0.1:{self.https_port};",
            # The simulated WeChat checks certificates against the public CAs only: it calls the
            # forwarding server over plain HTTP. The hop under test, to the service, stays TLS.
            "listen 443 ssl;": f"listen 127.0.0.1:{self.forwarder_port};", "listen [::]:443 ssl;": "",
            "proxy_pass http://127.0.0.1:9000;": f"proxy_pass http://127.0.0.1:{other_app_port};",
        })
        self.processes: list[subprocess.Popen] = []

    def cli(self, *args: str) -> str:
        """``flask --app wsgi ARGS`` with the service's environment."""
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self) -> None:
        """Install the service (safe mode), start gunicorn with gunicorn.conf.py, then nginx."""
        self.cli("init-db")
        config = self.folder / "channel.json"
        config.write_text(json.dumps({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN,
                                      "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "safe",
                                      "wx_template_id": TEMPLATE_NOTIFICATION_ID}))
        self.cli("weixin-config", str(config), "--no-check")
        self._spawn("gunicorn", [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"], self.env)
        wait_for(lambda: self._answers(f"http://127.0.0.1:{self.gunicorn_port}/healthz"), 30, 0.1, "gunicorn")
        conf = nginx_conf(self.folder / "nginx", {"weixin-notify.conf": self.main, "forwarding-server.conf": self.forwarding})
        self._spawn("nginx", [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")])
        wait_for(lambda: self._answers(f"http://127.0.0.1:{self.http_port}/healthz"), 15, 0.1, "nginx")

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        log.close()

    def _answers(self, url: str) -> bool:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[0]} exited:\n{self.logs()}"
        with contextlib.suppress(requests.RequestException):
            return requests.get(url, timeout=2, allow_redirects=False).status_code < 500
        return False

    def logs(self) -> str:
        """The end of every log of the stack, for failure messages."""
        parts = []
        for path in sorted(self.folder.glob("*.log")) + sorted((self.folder / "nginx").glob("error.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop nginx and gunicorn (each its own process group) the way systemd would."""
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def count(self, model) -> int:
        """Rows of a table in the service's database."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return connection.scalar(select(func.count()).select_from(model))
        finally:
            engine.dispose()


def other_teams_app(environ, start_response):
    """The forwarding team's own WeChat application: answers WeChat's URL check and every push itself."""
    from urllib.parse import parse_qs

    echostr = parse_qs(environ.get("QUERY_STRING", "")).get("echostr", [""])[0]
    body = (echostr if environ["REQUEST_METHOD"] == "GET" else "success").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def stack(tmp_path, simulator, certificate):
    """The whole deployment on this machine, with the simulated WeChat pushing with a 5 s patience."""
    nginx_binary()
    simulator.control("settings", {"push_timeout": 5})
    with serve(other_teams_app) as other:
        deployed = Stack(tmp_path, simulator.base_url, certificate, int(other.rsplit(":", 1)[1]))
        try:
            deployed.start()
            yield deployed
        finally:
            deployed.stop()


def submit_server_url(simulator, url: str, token: str = TOKEN) -> dict:
    """WeChat's 服务器配置 page: submitting makes WeChat check the URL with a signed GET."""
    return simulator.control("mp/server", {"url": url, "token": token, "encoding_aes_key": KEY, "mode": "safe"})


def test_wechat_reaches_the_callback_through_the_forwarding_server_and_the_proxy(stack, simulator):
    public_url = f"http://127.0.0.1:{stack.forwarder_port}{CALLBACK}"
    # A wrong Token fails: the signature really is checked at the far end, not waved through.
    refused = submit_server_url(simulator, public_url, token="NotTheToken")
    assert refused["ok"] is False, refused
    check = submit_server_url(simulator, public_url)
    assert check["ok"] is True, f"{check}\n{stack.logs()}"
    before = stack.count(CallbackEvent)
    # An encrypted push: msg_signature and encrypt_type in the query, the ciphertext in the body.
    push = simulator.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hello +&=% 你好"})
    assert push["outcome"] in ("reply", "success") and len(push["tries"]) == 1, f"{push}\n{stack.logs()}"
    assert stack.count(CallbackEvent) == before + 1


def test_a_forwarding_server_can_send_the_service_a_copy_of_another_apps_calls(stack, simulator):
    """Case 2 of forwarding-server.conf: the other team's app answers WeChat, nginx mirrors the call to us."""
    check = submit_server_url(simulator, f"http://127.0.0.1:{stack.forwarder_port}/wechat/callback")
    assert check["ok"] is True, check  # answered by the other application
    before = stack.count(CallbackEvent)
    push = simulator.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "copy me"})
    assert push["outcome"] == "success", push
    wait_for(lambda: stack.count(CallbackEvent) == before + 1, 10, 0.1, "the mirrored copy to reach the service")


def test_the_proxy_makes_https_urls_and_keeps_the_callback_on_plain_http(stack, certificate):
    cert, _ = certificate
    https = f"https://127.0.0.1:{stack.https_port}"
    document = requests.get(https + "/api/openapi.json", headers={"Host": NAME}, verify=cert, timeout=10)
    assert document.status_code == 200, document.text
    assert document.json()["servers"][0]["url"] == f"https://{NAME}:{stack.https_port}"
    # Plain HTTP: people are sent to HTTPS, WeChat's callback is served (here refused for its signature).
    http = f"http://127.0.0.1:{stack.http_port}"
    login = requests.get(http + "/login", headers={"Host": NAME}, allow_redirects=False, timeout=10)
    assert login.status_code == 301 and login.headers["Location"] == f"https://{NAME}/login"
    callback = requests.get(http + CALLBACK, params={"signature": "0" * 40, "timestamp": "1", "nonce": "2", "echostr": "3"},
                            allow_redirects=False, timeout=10)
    assert callback.status_code not in (301, 302) and "Location" not in callback.headers
    too_big = requests.post(https + "/api/c/compapi/cmsi/send_weixin/", data=b"x" * (1024 * 1024 + 1),
                            headers={"Host": NAME}, verify=cert, timeout=10)
    assert too_big.status_code == 413


def test_gunicorn_conf_runs_workers_without_scheduler_and_shares_metrics(stack, certificate):
    cert, _ = certificate
    health = requests.get(f"http://127.0.0.1:{stack.gunicorn_port}/healthz", timeout=10).json()
    assert health["scheduler"]["state"] == "external" and health["scheduler"]["in_process"] is False, health
    master = stack.processes[0].pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 2  # GUNICORN_WORKERS
    for _ in range(6):  # spread over both workers
        requests.get(f"https://127.0.0.1:{stack.https_port}/healthz", headers={"Host": NAME}, verify=cert, timeout=10)
    metrics = requests.get(f"https://127.0.0.1:{stack.https_port}/metrics", headers={"Host": NAME}, verify=cert, timeout=10)
    assert metrics.status_code == 200, metrics.text
    assert "weixin_http_request_duration_seconds" in metrics.text
    assert glob.glob(str(stack.metrics_dir / "*.db")), "no multiprocess metric files were written"


# --- gunicorn.conf.py on its own ------------------------------------------------------------------

def load_gunicorn_conf(monkeypatch, **environ) -> dict:
    """The settings gunicorn.conf.py makes in an environment holding only ``environ`` of its variables."""
    for name in list(os.environ):
        if name.startswith(("GUNICORN_", "FLASK_SCHEDULER")) or name in ("PROMETHEUS_MULTIPROC_DIR", "RUNTIME_DIRECTORY"):
            monkeypatch.delenv(name)
    # Set-and-restored by monkeypatch, so what the file writes into os.environ is undone afterwards.
    for name in ("FLASK_SCHEDULER_ENABLED", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    settings["environ"] = {name: os.environ.get(name) for name in ("FLASK_SCHEDULER_ENABLED", "PROMETHEUS_MULTIPROC_DIR")}
    return settings


def test_gunicorn_conf_defaults(monkeypatch):
    conf = load_gunicorn_conf(monkeypatch)
    assert conf["bind"] == ["127.0.0.1:8000"]
    assert conf["workers"] == min((os.cpu_count() or 1) + 1, 4)
    assert conf["worker_class"] == "gthread" and conf["threads"] == 4
    assert conf["timeout"] > Defaults.DELIVERY_TIME_BUDGET and conf["graceful_timeout"] > Defaults.DELIVERY_TIME_BUDGET
    assert conf["max_requests"] > 0 and 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["accesslog"] is None and conf["preload_app"] is False
    assert conf["control_socket_disable"] is True
    assert conf["environ"] == {"FLASK_SCHEDULER_ENABLED": "false",
                               "PROMETHEUS_MULTIPROC_DIR": str(ROOT / "instance" / "prometheus")}
    assert callable(conf["on_starting"]) and callable(conf["child_exit"])


def test_gunicorn_conf_follows_the_environment(monkeypatch, tmp_path):
    conf = load_gunicorn_conf(monkeypatch, GUNICORN_BIND="0.0.0.0:8000, [::]:8000", GUNICORN_WORKERS="7",
                              GUNICORN_FORWARDED_ALLOW_IPS="10.0.0.5", GUNICORN_ACCESSLOG="-",
                              FLASK_SCHEDULER_ENABLED="true", RUNTIME_DIRECTORY=str(tmp_path))
    assert conf["bind"] == ["0.0.0.0:8000", "[::]:8000"] and conf["workers"] == 7
    assert conf["forwarded_allow_ips"] == "10.0.0.5" and conf["accesslog"] == "-"
    # An explicit choice wins; under systemd the runtime folder holds the control socket and metrics.
    assert conf["environ"] == {"FLASK_SCHEDULER_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")}
    assert conf["control_socket"] == str(tmp_path / "gunicorn.ctl")


def test_gunicorn_conf_names_a_bad_number(monkeypatch):
    with pytest.raises(SystemExit, match=r"GUNICORN_WORKERS='four' is not a whole number"):
        load_gunicorn_conf(monkeypatch, GUNICORN_WORKERS="four")


# --- systemd, the command wrapper, the environment file --------------------------------------------

@pytest.mark.parametrize("unit", ["weixin-notify-web.service", "weixin-notify-scheduler.service"])
def test_systemd_units_verify(tmp_path, unit):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # The units name /opt/weixin-notify; here the code (and its .venv) is this checkout.
    copy = tmp_path / unit
    copy.write_text((DEPLOY / "systemd" / unit).read_text().replace("/opt/weixin-notify", str(ROOT)))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    ours = [line for line in done.stderr.splitlines() if unit in line]
    assert done.returncode == 0 and ours == [], done.stderr


def test_units_run_the_documented_commands(monkeypatch):
    web = (DEPLOY / "systemd" / "weixin-notify-web.service").read_text()
    scheduler = (DEPLOY / "systemd" / "weixin-notify-scheduler.service").read_text()
    assert "ExecStart=/opt/weixin-notify/.venv/bin/gunicorn --config /opt/weixin-notify/gunicorn.conf.py wsgi:app" in web
    assert "ExecStart=/opt/weixin-notify/.venv/bin/flask --app wsgi scheduler" in scheduler
    for unit in (web, scheduler):
        for line in ("EnvironmentFile=/etc/weixin-notify/env", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ReadWritePaths=/opt/weixin-notify/instance", "PrivateTmp=yes", "Restart=on-failure",
                     "User=weixin-notify"):
            assert line in unit
    # gunicorn.conf.py puts its control socket and metrics in the web unit's runtime folder.
    assert "RuntimeDirectory=weixin-notify" in web
    # systemd must wait longer than gunicorn lets requests finish.
    conf = load_gunicorn_conf(monkeypatch)
    assert int(re.search(r"TimeoutStopSec=(\d+)", web).group(1)) > conf["graceful_timeout"]


def test_env_example_names_only_settings_that_exist():
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"^#?(FLASK_[A-Z_]+)=", (DEPLOY / "env.example").read_text(), re.MULTILINE)
    assert {"FLASK_SECRET_KEY", "FLASK_DATABASE_URL", "FLASK_PUBLIC_URL", "FLASK_PROXY_COUNT"} <= set(names)
    unknown = [n for n in names if not hasattr(Defaults, n[len("FLASK_"):]) and f"`{n}`" not in readme]
    assert unknown == [], f"deploy/env.example sets settings the service does not have: {unknown}"


def test_the_wrapper_runs_commands_with_the_environment_file(tmp_path):
    env_file = tmp_path / "env"
    database = tmp_path / "wrapped.sqlite3"
    env_file.write_text(f"FLASK_DATABASE_URL=sqlite:///{database}\nFLASK_SECRET_KEY={SECRET_KEY}\n"
                        "FLASK_SCHEDULER_ENABLED=false\n")
    env = {"PATH": os.environ["PATH"], "WEIXIN_NOTIFY_ROOT": str(ROOT), "WEIXIN_NOTIFY_ENV": str(env_file),
           "WEIXIN_NOTIFY_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()}
    done = subprocess.run([str(DEPLOY / "weixin-notify"), "init-db"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Database upgraded from empty" in done.stdout and database.exists()
    env["WEIXIN_NOTIFY_ENV"] = str(tmp_path / "missing")
    missing = subprocess.run([str(DEPLOY / "weixin-notify"), "init-db"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "create it from deploy/env.example" in missing.stderr
