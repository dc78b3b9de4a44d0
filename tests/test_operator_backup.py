"""The backup and restore procedures of docs/operations.md, run command by command as written there.

The commands are read from the page's ``sh`` blocks, with this machine's paths and names put in for
the documented ones (``/opt/weixin-notify``, the role and database ``weixin``); the ``systemctl``
lines are the only ones left out (the test stops and starts the service itself). PostgreSQL: a dump
restored as the service's role works at once; one restored by a superuser makes ``init-db`` say what
is wrong in one sentence, and the documented fix makes it work. SQLite: both online backups are
taken while the service keeps writing, and the copy is restored.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.crash_support import ROOT, Installation, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import MP_CHANNEL, headers

OPERATIONS = ROOT / "docs" / "operations.md"
SEND = "/api/c/compapi/cmsi/send_weixin/"


def section(title: str) -> str:
    """The text of the section of docs/operations.md headed ``title`` (up to the next heading of its level or higher)."""
    page = OPERATIONS.read_text()
    found = re.search(rf"^(#+) {re.escape(title)}\n", page, re.M)
    assert found, f"docs/operations.md has no section {title!r}"
    level = len(found.group(1))
    rest = page[found.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def commands(title: str) -> list[str]:
    """The shell commands of a section's ``sh`` blocks, in order."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section(title), re.S):
        lines += [line for line in block.splitlines() if line.strip()]
    assert lines, f"the section {title!r} shows no command"
    return lines


class Operator:
    """Runs documented commands with this machine's paths and names in place of the documented ones."""

    def __init__(self, replacements: dict[str, str], env: dict[str, str]):
        self.replacements = replacements
        self.env = env
        self.skipped: list[str] = []

    def adapt(self, command: str) -> str:
        for documented, here in self.replacements.items():
            command = command.replace(documented, here)
        return command

    def run(self, command: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
        """Run one documented command (``systemctl`` lines are noted and left to the test)."""
        if command.startswith("systemctl "):
            self.skipped.append(command)
            return subprocess.CompletedProcess(command, 0, "", "")
        adapted = self.adapt(command)
        done = subprocess.run(shlex.split(adapted), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)
        if expect_ok:
            assert done.returncode == 0, f"{adapted}\n{done.stdout}\n{done.stderr}"
        return done

    def run_all(self, title: str) -> list[subprocess.CompletedProcess]:
        return [self.run(command) for command in commands(title)]


#: What deploy/weixin-notify runs (as the service's user, with its environment file): the flask command.
FLASK = f"{sys.executable} -m flask --app wsgi "


# --- PostgreSQL ----------------------------------------------------------------------------------

@pytest.fixture
def pg_role(postgres_url):
    """A login role of its own and the name of a database for it (both dropped afterwards): (role, database, admin URL)."""
    admin_url = make_url(postgres_url)
    name = "weixin_op_" + uuid.uuid4().hex[:8]
    admin = create_engine(admin_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE ROLE "{name}" LOGIN'))
    try:
        yield name, name, admin_url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


def pg_operator(role: str, database: str, admin_url, folder: Path) -> tuple[Operator, str]:
    """An operator on this PostgreSQL server; returns it and the service's SQLAlchemy URL."""
    host, port = admin_url.host or "127.0.0.1", admin_url.port or 5432
    service_url = f"postgresql+psycopg://{role}@{host}:{port}/{database}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
           # `sudo -u postgres createdb ...` and `psql`: the superuser, over TCP here.
           "PGHOST": host, "PGPORT": str(port), "PGUSER": admin_url.username or "postgres",
           "FLASK_DATABASE_URL": service_url, "FLASK_SECRET_KEY": "operations-test-key-not-for-production",
           "FLASK_SCHEDULER_ENABLED": "false"}
    if admin_url.password:
        env["PGPASSWORD"] = admin_url.password
    replacements = {
        "postgresql://weixin:PASSWORD@DBHOST:5432/weixin": f"postgresql://{role}@{host}:{port}/{database}",
        "createdb --owner weixin weixin": f"createdb --owner {role} {database}",
        "--dbname=weixin ": f"--dbname={database} ",
        "sudo -u postgres ": "",
        "/var/backups/": f"{folder}/",
        "/opt/weixin-notify/deploy/weixin-notify ": FLASK,
        "/opt/weixin-notify/deploy/": f"{ROOT}/deploy/",
    }
    return Operator(replacements, env), service_url


def superuser(admin_url, database: str):
    return create_engine(admin_url.set(database=database), isolation_level="AUTOCOMMIT")


def test_postgresql_backup_and_both_restores(pg_role, tmp_path):
    role, database, admin_url = pg_role
    operator, service_url = pg_operator(role, database, admin_url, tmp_path)
    # An installation as deployment.md makes it: a database owned by the service's role, with data.
    operator.run("sudo -u postgres createdb --owner weixin weixin")
    operator.run("/opt/weixin-notify/deploy/weixin-notify init-db")
    secret = operator.run("/opt/weixin-notify/deploy/weixin-notify create-api-app bk_monitor").stdout.strip().splitlines()[-1]
    operator.run("/opt/weixin-notify/deploy/weixin-notify create-user admin --admin --password correct-horse-9")

    operator.run_all("PostgreSQL")  # the backup, taken while the database is in use
    dump = tmp_path / "weixin-notify.dump"
    assert dump.stat().st_size > 0

    def rows() -> tuple[int, int]:
        engine = create_engine(service_url)
        try:
            with engine.connect() as connection:
                return (connection.scalar(text("SELECT count(*) FROM api_apps")),
                        connection.scalar(text("SELECT count(*) FROM users")))
        finally:
            engine.dispose()

    def drop_database():  # the page's "drop it first with dropdb" (forced: the test's own pool may linger)
        operator.run(f"dropdb --force {database}")

    # 1. Restored as the service's role: init-db finds the schema up to date, the data is back.
    drop_database()
    restore, repair = commands("Restoring PostgreSQL")[:3], commands("Restoring PostgreSQL")[3:]
    done = [operator.run(command) for command in restore]
    assert "Database already up to date" in done[-1].stdout
    assert rows() == (1, 1)

    # 2. Restored by the superuser: the tables belong to postgres and the service's role may not read them.
    drop_database()
    operator.run("sudo -u postgres createdb --owner weixin weixin")
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={database}", str(dump)],
                   env=operator.env, check=True, capture_output=True, timeout=120)
    refused = operator.run("/opt/weixin-notify/deploy/weixin-notify init-db", expect_ok=False)
    assert refused.returncode != 0
    message = refused.stderr + refused.stdout
    assert "Traceback" not in message and "psycopg" not in message, message
    assert f"the database role {role} is not allowed to use the table alembic_version (it belongs to" in message
    assert "give-tables-to-owner.sql" in message and f"--role={role}" in message
    assert len(message.strip().splitlines()) == 1, message

    # The documented repair, then init-db works and the service's role owns and writes its tables.
    assert [c.split()[0] for c in repair] == ["sudo", "/opt/weixin-notify/deploy/weixin-notify"]
    done = [operator.run(command) for command in repair]
    assert "Database already up to date" in done[-1].stdout
    engine = superuser(admin_url, database)
    try:
        with engine.connect() as connection:
            owners = set(connection.scalars(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")))
    finally:
        engine.dispose()
    assert owners == {role}
    operator.run("/opt/weixin-notify/deploy/weixin-notify create-user alice --password tulip-meadow-42")
    assert rows() == (1, 2)
    # The restored application's secret still authenticates (its hash came back with the dump).
    check = subprocess.run([sys.executable, "-c", (
        "from webapp import create_app\n"
        "from webapp.api.apps import verify_credentials\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    print(verify_credentials('bk_monitor', {secret!r}) is not None)\n")],
        cwd=ROOT, env=operator.env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip().endswith("True"), check.stderr


# --- SQLite --------------------------------------------------------------------------------------

class Writer(threading.Thread):
    """A calling program that keeps sending (each send stores a message) until stopped."""

    def __init__(self, base: str, secret: str):
        super().__init__(daemon=True)
        self.base, self.secret = base, secret
        self.stop = threading.Event()
        self.accepted = 0
        self.errors: list[str] = []

    def run(self) -> None:
        session = requests.Session()
        body = {"receiver__username": "nobody", "data": {"heading": "Backup drill", "message": "written during a backup"}}
        while not self.stop.is_set():
            answer = session.post(self.base + SEND, json=body, headers=headers(self.secret), timeout=30)
            if answer.status_code == 200 and answer.json()["data"]["message_id"]:
                self.accepted += 1
            else:
                self.errors.append(f"{answer.status_code} {answer.text[:200]}")


def count_messages(path: Path) -> int:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM messages"))
    finally:
        engine.dispose()


def test_sqlite_online_backups_while_the_service_writes_and_the_restore(wechat, tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir()
    database = instance / "weixin.sqlite3"
    logs = tmp_path / "logs"
    logs.mkdir()
    service = Installation(f"sqlite:///{database}", wechat[0], logs, SCHEDULER_ENABLED="false")
    backups = tmp_path / "backups"
    backups.mkdir()
    operator = Operator({
        "/opt/weixin-notify/instance/": f"{instance}/",
        "/opt/weixin-notify/.venv/bin/python": sys.executable,
        "/var/backups/": f"{backups}/",
        "/opt/weixin-notify/deploy/weixin-notify ": FLASK,
        "install -o weixin-notify -g weixin-notify ": "install ",
    }, service.env)
    try:
        secret = service.install(MP_CHANNEL, app_code="drill")
        base = service.start()
        writer = Writer(base, secret)
        writer.start()
        try:
            backup_commands = commands("SQLite")
            sqlite_cli, python_api, check = backup_commands
            copies = []
            for round_ in range(3):
                for command, name in ((sqlite_cli, "cli"), (python_api, "api")):
                    # Wait for the writer to have stored something since the previous copy.
                    before = writer.accepted
                    while writer.accepted <= before + 2 and not writer.errors:
                        writer.stop.wait(0.05)
                    operator.run(command)
                    copy = backups / f"{name}-{round_}.sqlite3"
                    (backups / "weixin-notify.sqlite3").rename(copy)
                    copies.append(copy)
        finally:
            writer.stop.set()
            writer.join(timeout=60)
        assert not writer.errors, writer.errors[:3]
        total = count_messages(database)
        assert writer.accepted == total and total > 10
        counts = []
        for copy in copies:
            checked = operator.run(check.replace("/var/backups/weixin-notify.sqlite3", str(copy)))
            assert checked.stdout.strip() == "ok", (copy, checked.stdout)
            counts.append(count_messages(copy))
        # Each copy holds what was written before it was taken, and the service went on meanwhile.
        assert counts == sorted(counts) and 0 < counts[0] < counts[-1] < total, counts

        # Restore the last copy, as the page says, with the service stopped (SIGKILL: its WAL stays).
        service.kill()
        assert Path(f"{database}-wal").exists()
        (backups / "weixin-notify.sqlite3").write_bytes(copies[-1].read_bytes())
        done = {command: operator.run(command) for command in commands("Restoring SQLite")}
        init_db = [result for command, result in done.items() if command.endswith(" init-db")]
        assert len(init_db) == 1 and "Database already up to date" in init_db[0].stdout
        assert operator.skipped == ["systemctl start weixin-notify-web weixin-notify-scheduler"]
        assert count_messages(database) == counts[-1]
        base = service.start()
        answer = requests.post(base + SEND, headers=headers(secret), timeout=30,
                               json={"receiver__username": "nobody", "data": {"heading": "after", "message": "restore"}})
        assert answer.status_code == 200 and answer.json()["data"]["message_id"], answer.text
        assert count_messages(database) == counts[-1] + 1
    finally:
        service.stop()
