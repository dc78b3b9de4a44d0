"""The ``flask --app wsgi`` commands: init-db, create-user, create-api-app, scheduler, rotate-secrets."""
from __future__ import annotations

import logging
import signal

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from webapp import migrate
from webapp.extensions import db


def register(app: Flask) -> None:
    """Add the service's commands to ``app.cli``."""
    for command in (init_db, create_user, create_api_app, weixin_config, scheduler, rotate_secrets):
        app.cli.add_command(command)


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create the database schema, or upgrade it to the newest version (safe to run again)."""
    try:
        before = migrate.current_revision(db.engine)
        migrate.upgrade(db.engine)
    except OperationalError as exc:
        raise click.ClickException(
            f"cannot reach the database ({type(exc.orig).__name__}): check FLASK_DATABASE_URL and that the server runs"
        ) from None
    head = migrate.head_revision()
    if before == head:
        click.echo(f"Database already up to date (revision {head}).")
    else:
        click.echo(f"Database upgraded from {before or 'empty'} to revision {head}.")


@click.command("create-user")
@click.argument("name")
@click.option("--password", help="The user's password (asked for when left out).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@with_appcontext
def create_user(name: str, password: str | None, admin: bool) -> None:
    """Create the user NAME (fails if NAME exists)."""
    from webapp.auth.services import UserError
    from webapp.auth.services import create_user as create

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with current_app.test_request_context():  # the rule sentences are translated strings
            create(name, password, is_admin=admin, actor="cli")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(_database_problem(exc)) from None
    click.echo(f"Created {'administrator' if admin else 'user'} {name}.")


@click.command("create-api-app")
@click.argument("app_code")
@click.option("--rate-limit", type=click.IntRange(1, 1_000_000), help="Send requests allowed per minute.")
@with_appcontext
def create_api_app(app_code: str, rate_limit: int | None) -> None:
    """Register the calling application APP_CODE and print its new secret (last line; shown only once)."""
    from webapp.api.apps import AppError, create_app_credentials

    try:
        with current_app.test_request_context():
            _, secret = create_app_credentials(app_code, actor="cli", rate_limit_per_minute=rate_limit)
    except AppError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(_database_problem(exc)) from None
    click.echo(f"Registered {app_code}. Keep its secret now: it is stored hashed and cannot be shown again.")
    click.echo(secret)


@click.command("weixin-config")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--no-check", is_flag=True, help="Store without checking the keys live against WeChat.")
@with_appcontext
def weixin_config(file, no_check: bool) -> None:
    """Load the WeChat channel configuration from the JSON FILE (checked live first unless --no-check).

    Nothing is stored when a key is invalid or the live check fails; the output says what to fix.
    """
    import json

    from webapp import channel

    try:
        data = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not valid JSON: {exc}") from None
    try:
        clean = channel.normalize(data, current=channel.load())
    except channel.ConfigInvalid as exc:
        lines = "\n".join(f"  {key}: {message}" for key, message in exc.errors.items())
        raise click.ClickException(f"the configuration is invalid; nothing was stored:\n{lines}") from None
    label = "Official Account" if clean["wx_type"] == "mp" else "WeCom"
    if not no_check:
        click.echo(f"Checking the {label} keys with WeChat ({_api_base(clean['wx_type'])}) ...")
        try:
            learnt = channel.check_live(clean)
        except channel.CheckFailed as exc:
            where = f" [{exc.key}]" if exc.key else ""
            code = f" (errcode {exc.errcode})" if exc.errcode is not None else ""
            raise click.ClickException(
                f"the live check failed{code}{where}; nothing was stored.\n  {exc.message_en}\n  {exc.message_zh}"
            ) from None
        for key, value in learnt.items():
            click.echo(f"  {key}: {value}")
    channel.save(clean, actor="cli")
    click.echo(f"Stored the {label} configuration for {clean.get('wx_app_id') or clean.get('wx_qy_corpid')}.")


def _api_base(wx_type: str) -> str:
    return current_app.config["WEIXIN_MP_API_BASE" if wx_type == "mp" else "WEIXIN_QY_API_BASE"]


@click.command("scheduler")
@with_appcontext
def scheduler() -> None:
    """Run the background jobs in this process until stopped (for deployments with several web workers)."""
    from webapp.jobs import build_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = current_app._get_current_object()
    blocking = build_scheduler(app, blocking=True)
    signal.signal(signal.SIGTERM, lambda *_: blocking.shutdown(wait=False))
    click.echo("Scheduler running; stop with Ctrl+C.")
    try:
        blocking.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    click.echo("Scheduler stopped.")


@click.command("rotate-secrets")
@with_appcontext
def rotate_secrets() -> None:
    """Re-encrypt every stored secret with the current SECRET_KEY (after moving the old one to OLD_SECRET_KEYS)."""
    from webapp.models import AccessToken, ChannelConfig
    from webapp.secretbox import SecretUnreadable, box

    secret_box = box()
    count = 0
    try:
        with db.transaction() as session:
            for model in (ChannelConfig, AccessToken):
                columns = [c.key for c in model.__table__.columns if c.key.endswith("_enc")]
                for row in session.scalars(select(model)):
                    for column in columns:
                        value = getattr(row, column)
                        if value is not None:
                            setattr(row, column, secret_box.rotate(value))
                            count += 1
    except SecretUnreadable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Re-encrypted {count} stored secret(s) with the current key.")


def _database_problem(exc: SQLAlchemyError) -> str:
    if isinstance(exc, OperationalError) and "no such table" in str(exc):
        return "the database has no tables yet: run `flask --app wsgi init-db` first"
    return f"database error ({type(exc).__name__}): run `flask --app wsgi init-db` and check FLASK_DATABASE_URL"
