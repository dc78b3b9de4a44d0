"""The installing, upgrading and rotating sections of docs/operations.md, run command by command.

As in ``test_operator_backup``, the commands are read from the page with this machine's paths and
names put in. An upgrade starts from a database one schema older than the code with data in it
(users, a calling application, the channel, a sent message) and must keep all of it; the key
rotation must leave the stored WeChat secrets readable with the new key alone.
"""
from __future__ import annotations

import json
import sys

import requests
from alembic import command as alembic
from sqlalchemy import create_engine, text

from tests.crash_support import ROOT, Installation, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import MP_CHANNEL, headers
from tests.test_operator_backup import FLASK, Operator, commands
from webapp import migrate
from webapp.simulator.world import OPENID_ALICE

SEND = "/api/c/compapi/cmsi/send_weixin/"
#: The service's address in the page's commands.
DOCUMENTED_ADDRESS = "http://127.0.0.1:8000"
APP_CODE = "drill"


def operator_for(service: Installation) -> Operator:
    """An operator for ``service``: the page's paths become this checkout's, pip this interpreter's."""
    env = {**service.env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return Operator({
        "/opt/weixin-notify/.venv/bin/pip ": f"{sys.executable} -m pip ",
        "/opt/weixin-notify/requirements.txt": str(ROOT / "requirements.txt"),
        "/opt/weixin-notify/deploy/weixin-notify ": FLASK,
        "python3 -c": f"{sys.executable} -c",
    }, env)


def send(base: str, secret: str, message: str) -> dict:
    answer = requests.post(base + SEND, headers=headers(secret, APP_CODE), timeout=30,
                           json={"receiver": OPENID_ALICE, "data": {"heading": "Lifecycle", "message": message}})
    assert answer.status_code == 200, answer.text
    return answer.json()


def count(service: Installation, table: str) -> int:
    with service.engine.connect() as connection:
        return connection.scalar(text(f"SELECT count(*) FROM {table}"))


def test_installing_then_upgrading_from_an_older_schema_keeps_everything(world, wechat, tmp_path):
    service = Installation(f"sqlite:///{tmp_path / 'weixin.sqlite3'}", wechat[0], tmp_path, SCHEDULER_ENABLED="false")
    operator = operator_for(service)
    try:
        secret = service.install(MP_CHANNEL, app_code=APP_CODE)
        service.cli("create-user", "alice", "--password", "tulip-meadow-42")
        base = service.start()
        operator.replacements[DOCUMENTED_ADDRESS] = base
        [check] = commands("Installing")
        assert json.loads(operator.run(check).stdout)["status"] in ("ok", "degraded")
        assert send(base, secret, "before the upgrade")["result"] is True
        service.stop()

        # The release before: the schema as its last migration left it (the rows stay where they fit).
        config = migrate.alembic_config()
        engine = create_engine(service.database_url)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                alembic.downgrade(config, "0005")
        finally:
            engine.dispose()
        service.engine.dispose()
        assert migrate.current_revision(service.engine) == "0005"

        done = []
        for line in commands("Upgrading"):
            if line.startswith("systemctl start"):
                base = service.start()
                operator.replacements[DOCUMENTED_ADDRESS] = base
            done.append(operator.run(line))
        assert [line.split()[0] for line in operator.skipped] == ["systemctl", "systemctl"]
        head = migrate.head_revision()
        init_db = next(result for line, result in zip(commands("Upgrading"), done) if line.endswith(" init-db"))
        assert f"Database upgraded from 0005 to revision {head}." in init_db.stdout
        assert json.loads(done[-1].stdout)["status"] in ("ok", "degraded")
        assert migrate.current_revision(service.engine) == head
        # Everything stored before is there and works: the user, the application's secret, the channel.
        assert count(service, "users") == 1 and count(service, "messages") == 1
        answer = send(base, secret, "after the upgrade")
        assert answer["result"] is True and answer["data"]["deliveries"][0]["status"] == "sent", answer
        assert len(world.get_messages("mp")) == 2
    finally:
        service.stop()


def test_rotating_the_secret_key_as_documented(world, wechat, tmp_path):
    service = Installation(f"sqlite:///{tmp_path / 'weixin.sqlite3'}", wechat[0], tmp_path, SCHEDULER_ENABLED="false")
    try:
        secret = service.install(MP_CHANNEL, app_code=APP_CODE)
        old_key = service.env["FLASK_SECRET_KEY"]
        generate, rotate = commands("Rotating keys and secrets")
        new_key = operator_for(service).run(generate).stdout.strip()
        assert len(new_key) == 64 and new_key != old_key

        # Every host: the new key, the old one among the old keys; then rotate-secrets once.
        service.env.update(FLASK_SECRET_KEY=new_key, FLASK_OLD_SECRET_KEYS=json.dumps([old_key]))
        rotated = operator_for(service).run(rotate)
        assert "Re-encrypted" in rotated.stdout and "stored secret(s) with the current key." in rotated.stdout

        # The old key taken out: the stored AppSecret still decrypts (the token fetch needs it).
        del service.env["FLASK_OLD_SECRET_KEYS"]
        base = service.start()
        answer = send(base, secret, "after the rotation")
        assert answer["result"] is True and answer["data"]["deliveries"][0]["status"] == "sent", answer
    finally:
        service.stop()
