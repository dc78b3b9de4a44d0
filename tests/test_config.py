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


def test_an_empty_or_unreadable_key_file_is_reported_not_replaced(tmp_path):
    import pytest

    (tmp_path / "secret_key").write_text("\n")
    with pytest.raises(RuntimeError, match="is empty: put the service's secret key back in it, or delete it"):
        ensure_secret_key(tmp_path)
    assert (tmp_path / "secret_key").read_text() == "\n"
    (tmp_path / "secret_key").unlink()
    (tmp_path / "secret_key").mkdir()  # unreadable as a file, even for root
    with pytest.raises(RuntimeError, match="cannot read the secret key file .* or set FLASK_SECRET_KEY"):
        ensure_secret_key(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


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
    """One process creates keys in 1000 fresh folders while another watches each key appear: the key
    is never seen empty (a second worker starting then failed with "is empty")."""
    import subprocess
    import sys
    import time

    from tests.crash_support import ROOT

    count, start = "1000", str(time.time() + 1.5)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(tmp_path), count, start], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    creator = subprocess.run([sys.executable, "-c", CREATOR, str(tmp_path), count, start], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    out, err = watcher.communicate(timeout=120)
    assert creator.returncode == 0 and watcher.returncode == 0, creator.stderr + err
    assert out.strip() == "0", f"a key was seen empty {out.strip()} times in {count}"
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "secret_key"]
    assert not leftovers, leftovers


# One starting worker. It imports the real webapp/config.py but not webapp/__init__.py, which would
# import the whole service (0.6 s of CPU per process, times twelve on a two-core machine); says
# "ready"; reads the common start time from stdin; then for each round sleeps until that round's
# start and calls ensure_secret_key on the round's fresh folder. Each round prints "<round> <key>",
# or "<round> error <message>" if the call failed (the process then exits 1 after the last round).
RACER = """
import sys, time, types
from pathlib import Path
package = types.ModuleType("webapp")
package.__path__ = [str(Path("webapp").resolve())]
sys.modules["webapp"] = package
from webapp.config import ensure_secret_key
assert ensure_secret_key.__code__.co_filename == str(Path("webapp/config.py").resolve())
root, rounds, interval = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
print("ready", flush=True)
start = float(sys.stdin.readline())
failed = False
for number in range(rounds):
    time.sleep(max(0.0, start + number * interval - time.time()))
    try:
        print(number, ensure_secret_key(root / str(number)), flush=True)
    except Exception as exc:
        failed = True
        print(number, "error", repr(exc).replace(chr(10), " "), flush=True)
sys.exit(1 if failed else 0)
"""


def test_workers_starting_at_once_all_read_the_one_key(tmp_path):
    """Twelve processes create the key in the same fresh folder at the same instant, twenty times:
    each gets the same whole key, the file holds it with mode 0600, and nothing is left behind."""
    import subprocess
    import sys
    import time

    from tests.crash_support import ROOT

    processes, rounds, interval = 12, 20, 0.2
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(rounds), str(interval)], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(processes)]
    try:
        # Start only when every process has imported, so that they all really race in round 0 too.
        for racer in racers:
            assert racer.stdout.readline() == "ready\n", racer.communicate(timeout=60)[1][-2000:]
        start = f"{time.time() + 0.2!r}\n"
        for racer in racers:
            racer.stdin.write(start)
            racer.stdin.flush()  # communicate() closes it
        results = [racer.communicate(timeout=60) + (racer.returncode,) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    errors = [line for out, _, _ in results for line in out.splitlines() if " error " in line]
    assert not errors, f"{len(errors)} failed calls in {processes * rounds}, e.g. {errors[:3]}"
    assert [code for _, _, code in results] == [0] * processes, [err[-2000:] for _, err, _ in results]
    keys = {}  # round -> the keys its processes printed
    for out, _, _ in results:
        for line in out.splitlines():
            number, key = line.split()
            keys.setdefault(int(number), []).append(key)
    assert sorted(keys) == list(range(rounds))
    for number, printed in keys.items():
        folder = tmp_path / str(number)
        assert len(printed) == processes and len(set(printed)) == 1 and len(printed[0]) == 64, (number, printed)
        path = folder / "secret_key"
        assert path.read_text() == printed[0] + "\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in folder.iterdir()) == ["secret_key"], number  # no temporary file left
