"""Configuration loading and the generated secret key."""
import os
import stat

from webapp import create_app
from webapp.config import Defaults, ensure_secret_key, load_config


def test_defaults_match_the_contract(app):
    assert Defaults.WEIXIN_MP_API_BASE == "https://api.weixin.qq.com"
    assert Defaults.WEIXIN_QY_API_BASE == "https://qyapi.weixin.qq.com"
    assert Defaults.WEIXIN_QY_LOGIN_URL == "https://login.work.weixin.qq.com/wwlogin/sso/login"
    assert Defaults.SCHEDULER_ENABLED is True and Defaults.WEIXIN_SIMULATOR is False
    assert Defaults.PUBLIC_URL is None


def _fresh_app(tmp_path, monkeypatch, env=None, config_py=None):
    from flask import Flask

    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    if config_py is not None:
        (instance / "config.py").write_text(config_py)
    for key in list(os.environ):
        if key.startswith("FLASK_"):
            monkeypatch.delenv(key)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    app = Flask("probe", instance_path=str(instance), instance_relative_config=True)
    load_config(app, None)
    return app


def test_environment_and_instance_file(tmp_path, monkeypatch):
    app = _fresh_app(
        tmp_path,
        monkeypatch,
        env={"FLASK_SCHEDULER_ENABLED": "false", "FLASK_PUBLIC_URL": "https://paas.example.com:8443/",
             "FLASK_WEIXIN_MP_API_BASE": "http://127.0.0.1:5000/simulator/mp"},
        config_py="WEIXIN_SIMULATOR = True\nPUBLIC_URL = 'http://ignored.example'\n",
    )
    assert app.config["SCHEDULER_ENABLED"] is False
    assert app.config["WEIXIN_SIMULATOR"] is True  # from instance/config.py
    assert app.config["PUBLIC_URL"] == "https://paas.example.com:8443"  # environment wins, slash trimmed
    assert app.config["WEIXIN_MP_API_BASE"] == "http://127.0.0.1:5000/simulator/mp"
    assert app.config["DATABASE_URL"] == "sqlite:///" + str(tmp_path / "instance" / "weixin.sqlite3")


def test_string_booleans_from_the_environment(tmp_path, monkeypatch):
    app = _fresh_app(tmp_path, monkeypatch, env={"FLASK_SCHEDULER_ENABLED": "no", "FLASK_WEIXIN_SIMULATOR": "on"})
    assert app.config["SCHEDULER_ENABLED"] is False and app.config["WEIXIN_SIMULATOR"] is True


def test_secret_key_generated_once_with_mode_0600(tmp_path, monkeypatch):
    first = _fresh_app(tmp_path, monkeypatch).config["SECRET_KEY"]
    second = _fresh_app(tmp_path, monkeypatch).config["SECRET_KEY"]
    path = tmp_path / "instance" / "secret_key"
    assert first == second and len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_key_from_environment_is_not_written(tmp_path, monkeypatch):
    app = _fresh_app(tmp_path, monkeypatch, env={"FLASK_SECRET_KEY": "from-env"})
    assert app.config["SECRET_KEY"] == "from-env"
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_two_instances_get_different_keys(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert ensure_secret_key(tmp_path / "a") != ensure_secret_key(tmp_path / "b")


def test_test_config_overrides(database_url):
    app = create_app({"SECRET_KEY": "x", "DATABASE_URL": database_url, "TESTING": True, "SCHEDULER_ENABLED": False})
    assert app.config["DATABASE_URL"] == database_url
    assert "simulator.index" not in app.view_functions  # the simulator is off unless asked for


CREATOR = """
import sys, time
from pathlib import Path
from webapp.config import ensure_secret_key
root, count, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for number in range(count):
    ensure_secret_key(root / str(number))
"""

# Watches each folder's key appear, as a second worker starting at that moment would, and counts the
# times it found the file there but not yet written.
WATCHER = """
import os, sys, time
root, count, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
empty = 0
deadline = time.time() + 60
for number in range(count):
    path = os.path.join(root, str(number), "secret_key")
    while time.time() < deadline:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            continue
        empty += size == 0
        break
print(empty)
"""


def test_a_starting_worker_never_finds_the_key_half_written(tmp_path):
    """One process creates keys in 3000 fresh folders while another watches each key appear: the key
    is never seen empty (a second worker starting then failed with "is empty")."""
    import subprocess
    import sys
    import time

    from tests.crash_support import ROOT

    count, start = "3000", str(time.time() + 1.5)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(tmp_path), count, start], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    creator = subprocess.run([sys.executable, "-c", CREATOR, str(tmp_path), count, start], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    out, err = watcher.communicate(timeout=120)
    assert creator.returncode == 0 and watcher.returncode == 0, creator.stderr + err
    assert out.strip() == "0", f"a key was seen empty {out.strip()} times in 3000"
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "secret_key"]
    assert not leftovers, leftovers


RACER = """
import sys, time
from pathlib import Path
from webapp.config import ensure_secret_key
start = float(sys.argv[2])
while time.time() < start:
    pass
print(ensure_secret_key(Path(sys.argv[1])))
"""


def test_workers_starting_at_once_all_read_the_one_key(tmp_path):
    """Six processes create the key in the same fresh folder at the same instant, four times:
    each gets the same whole key, the file holds it with mode 0600, and nothing is left behind."""
    import subprocess
    import sys
    import time

    from tests.crash_support import ROOT

    for round_number in range(4):
        folder = tmp_path / f"instance-{round_number}"
        start = time.time() + 1.0
        racers = [subprocess.Popen([sys.executable, "-c", RACER, str(folder), str(start)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
        results = [racer.communicate(timeout=60) + (racer.returncode,) for racer in racers]
        failed = [err for _, err, code in results if code != 0]
        assert not failed, f"round {round_number}: {failed[0][-500:]}"
        keys = {out.strip() for out, _, _ in results}
        assert len(keys) == 1 and len(keys.pop()) == 64, keys
        path = folder / "secret_key"
        assert path.read_text().strip() == results[0][0].strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in folder.iterdir()) == ["secret_key"]
