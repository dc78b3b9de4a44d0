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
