"""The flask commands of the contract: their output, their errors and their exit codes."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from tests.conftest import USER
from webapp.api.apps import verify_secret
from webapp.extensions import db
from webapp.models import ApiApp, User

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_has_help(runner):
    for command in ("init-db", "create-user", "create-api-app", "scheduler", "rotate-secrets"):
        result = runner.invoke(args=[command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_init_db_is_safe_to_run_again(runner):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0 and "already up to date" in result.output


def test_init_db_on_an_empty_database(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0 and "upgraded from empty" in result.output


def test_init_db_reports_an_unreachable_database(make_app):
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code != 0 and "cannot reach the database" in result.output


def test_create_user_and_duplicate(runner, app):
    result = runner.invoke(args=["create-user", "carol", "--password", "maple-river-77", "--admin"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["create-user", "carol", "--password", "maple-river-77"])
    assert result.exit_code != 0 and "already taken" in result.output
    with app.app_context():
        carol = db.session.scalar(select(User).where(User.username == "carol"))
        assert carol.is_admin and carol.check_password("maple-river-77")


def test_create_user_enforces_password_rules(runner):
    result = runner.invoke(args=["create-user", "dave", "--password", "short"])
    assert result.exit_code != 0 and "at least 10 characters" in result.output


def test_create_user_prompts_for_a_missing_password(runner, app):
    result = runner.invoke(args=["create-user", "erin"], input="quiet-harbor-5\nquiet-harbor-5\n")
    assert result.exit_code == 0, result.output


def test_a_prompted_password_is_asked_twice_until_both_match(runner, app):
    typed = "first-try-77\nother-try-77\nquiet-harbor-5\nquiet-harbor-5\n"
    result = runner.invoke(args=["create-user", "fern"], input=typed)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Password: ") and "Repeat for confirmation: " in result.output
    assert "Error: The two entered values do not match." in result.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "fern")).check_password("quiet-harbor-5")


def test_set_password_prompts_for_the_new_password(runner, app, users):
    result = runner.invoke(args=["set-password", USER[0]], input="fresh-meadow-8\nfresh-meadow-8\n")
    assert result.exit_code == 0 and result.output.startswith("New password: "), result.output
    assert f"Set a new password for {USER[0]}." in result.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == USER[0])).check_password("fresh-meadow-8")


def test_a_prompted_password_follows_the_password_rules(runner):
    result = runner.invoke(args=["create-user", "gail"], input="short\nshort\n")
    assert result.exit_code == 1 and "Error: " in result.output and "at least 10 characters" in result.output


def test_create_api_app_prints_the_secret_last_and_stores_a_hash(runner, app):
    result = runner.invoke(args=["create-api-app", "bk_monitor"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert len(secret) >= 40
    with app.app_context():
        stored = db.session.scalar(select(ApiApp).where(ApiApp.app_code == "bk_monitor"))
        assert secret not in stored.secret_hash and verify_secret(stored.secret_hash, secret)
        assert not verify_secret(stored.secret_hash, secret + "x")
    again = runner.invoke(args=["create-api-app", "bk_monitor"])
    assert again.exit_code != 0 and "already registered" in again.output
    bad = runner.invoke(args=["create-api-app", "no spaces allowed"])
    assert bad.exit_code != 0


def test_commands_on_an_unmigrated_database_say_what_to_do(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'new.sqlite3'}")
    result = app.test_cli_runner().invoke(args=["create-user", "x", "--password", "long-password"])
    assert result.exit_code != 0 and "init-db" in result.output
    for command in (["set-password", "x", "--password", "long-password"], ["create-api-app", "ops"]):
        result = app.test_cli_runner().invoke(args=command)
        assert result.exit_code == 1 and "run `flask --app wsgi init-db` first" in result.output, command


def test_rotate_secrets_keeps_values_readable(make_app):
    from webapp.models import ChannelConfig
    from webapp.secretbox import SecretBox, box

    old = make_app(SECRET_KEY="old-key")
    with old.app_context():
        db.session.add(ChannelConfig(wx_type="mp", wx_app_id="wx1", wx_secret_enc=box().encrypt("app-secret")))
        db.session.commit()
    new = make_app(SECRET_KEY="new-key", OLD_SECRET_KEYS=["old-key"])
    result = new.test_cli_runner().invoke(args=["rotate-secrets"])
    assert result.exit_code == 0 and "Re-encrypted 1" in result.output, result.output
    with new.app_context():
        stored = db.session.scalar(select(ChannelConfig)).wx_secret_enc
    assert SecretBox("new-key").decrypt(stored) == "app-secret"  # the old key is no longer needed
    assert "app-secret" not in stored


def _cli_env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update(FLASK_DATABASE_URL=database_url, FLASK_SECRET_KEY="cli-test", FLASK_SCHEDULER_ENABLED="true")
    return env


def test_scheduler_command_runs_until_stopped(database_url):
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"],
        cwd=ROOT, env=_cli_env(database_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(2)
        assert process.poll() is None, process.stdout.read()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Scheduler running" in output and "Added job" in output and "Scheduler stopped." in output


def test_real_command_line_exit_codes(database_url):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                              env=_cli_env(database_url), capture_output=True, text=True, timeout=60)

    assert run("init-db").returncode == 0
    assert run("create-user", "zoe", "--password", "amber-cloud-9").returncode == 0
    duplicate = run("create-user", "zoe", "--password", "amber-cloud-9")
    assert duplicate.returncode != 0 and "already taken" in duplicate.stderr
    created = run("create-api-app", "ops")
    assert created.returncode == 0 and len(created.stdout.strip().splitlines()[-1]) >= 40
