"""The ``flask --app wsgi`` commands: init-db, create-user, set-password, create-api-app, scheduler, rotate-secrets, copy-data."""
from __future__ import annotations

import logging
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_babel import gettext as _
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from webapp import migrate
from webapp.extensions import db


def register(app: Flask) -> None:
    """Add the service's commands to ``app.cli``."""
    for command in (init_db, create_user, set_password, create_api_app, weixin_config, scheduler, rotate_secrets, copy_data):
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
    except DBAPIError as exc:
        problem = _privilege_problem(exc)
        if problem is None:
            raise
        raise click.ClickException(problem) from None
    head = migrate.head_revision()
    if before == head:
        click.echo(f"Database already up to date (revision {head}).")
    else:
        click.echo(f"Database upgraded from {before or 'empty'} to revision {head}.")


#: PostgreSQL's SQLSTATE for insufficient_privilege ("permission denied", "must be owner of").
_INSUFFICIENT_PRIVILEGE = "42501"
_DENIED_OBJECT = re.compile(r"(?:permission denied for|must be owner of) (table|relation|sequence|schema|database) \"?([\w.]+)")


def _privilege_problem(exc: DBAPIError) -> str | None:
    """What to do when the service's database role may not use or change its schema, or None for another error.

    Typically the tables belong to another role after a dump was restored as a superuser: the
    sentence names the service's role, the table and its owner, and the fix.
    """
    if getattr(exc.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
        return None
    found = _DENIED_OBJECT.search(str(exc.orig))
    kind, name = found.groups() if found else ("table", "?")
    role, owner = "?", "?"
    try:
        with db.engine.connect() as connection:  # a connection of its own: the failed one is aborted
            role, owner = connection.execute(text(
                "SELECT current_user, (SELECT tableowner FROM pg_tables WHERE tablename = :name "
                "AND schemaname = ANY (current_schemas(false)) LIMIT 1)"), {"name": name.rsplit(".", 1)[-1]}).one()
    except SQLAlchemyError:
        logging.getLogger(__name__).debug("cannot look up the owner of %s", name, exc_info=True)
    return _(
        "the database role %(role)s is not allowed to use the %(kind)s %(name)s (it belongs to %(owner)s), "
        "so the schema cannot be checked or upgraded. This happens when a dump was restored by another role, "
        "such as postgres. As a superuser, give the service's role its tables: restore the dump again with "
        "`pg_restore --no-owner --role=%(role)s`, or give every table to the database's owner with "
        "deploy/postgresql/give-tables-to-owner.sql (docs/operations.md, \"Restoring PostgreSQL\"); then run "
        "init-db again.",
        role=role, kind=kind, name=name, owner=owner or "?")


@click.command("create-user")
@click.argument("name")
@click.option("--password", help="The user's password (asked for when left out).")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@with_appcontext
def create_user(name: str, password: str | None, admin: bool) -> None:
    """Create the user NAME (fails if NAME exists)."""
    from webapp.auth.services import UserError
    from webapp.auth.services import create_user as create

    password = _password_or_prompt(password, "Password")
    with _service_call(UserError):
        create(name, password, is_admin=admin, actor="cli")
    click.echo(f"Created {'administrator' if admin else 'user'} {name}.")


@click.command("set-password")
@click.argument("name")
@click.option("--password", help="The new password (asked for when left out).")
@with_appcontext
def set_password(name: str, password: str | None) -> None:
    """Give the existing user NAME a new password (for a user who forgot theirs; audited)."""
    from webapp.auth.services import UserError, reset_password

    password = _password_or_prompt(password, "New password")
    with _service_call(UserError):
        reset_password(name, password, actor="cli")
    click.echo(f"Set a new password for {name}.")


@click.command("create-api-app")
@click.argument("app_code")
@click.option("--rate-limit", type=click.IntRange(1, 1_000_000), help="Send requests allowed per minute.")
@with_appcontext
def create_api_app(app_code: str, rate_limit: int | None) -> None:
    """Register the calling application APP_CODE and print its new secret (last line; shown only once)."""
    from webapp.api.apps import AppError, create_app_credentials

    with _service_call(AppError):
        _, secret = create_app_credentials(app_code, actor="cli", rate_limit_per_minute=rate_limit)
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
                f"the live check failed{code}{where}; nothing was stored.\n  {exc.message('en')}\n  {exc.message('zh')}"
            ) from None
        for key, value in learnt.items():
            click.echo(f"  {key}: {value}")
    channel.save(clean, actor="cli")
    click.echo(f"Stored the {label} configuration for {clean.get('wx_app_id') or clean.get('wx_qy_corpid')}.")


def _api_base(wx_type: str) -> str:
    return current_app.config["WEIXIN_MP_API_BASE" if wx_type == "mp" else "WEIXIN_QY_API_BASE"]


@click.command("scheduler")
@click.option("--metrics-address", metavar="HOST:PORT", default=None,
              help="Also serve this process's Prometheus counters (deliveries retried, tokens refreshed) "
                   "on HOST:PORT, e.g. 127.0.0.1:9101. Keep it on an internal address.")
@with_appcontext
def scheduler(metrics_address: str | None) -> None:
    """Run the background jobs in this process until stopped (for deployments with several web workers)."""
    from webapp import metrics
    from webapp.jobs import build_scheduler

    if metrics_address:
        try:
            bound = metrics.serve_process_metrics(metrics_address)
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"cannot serve metrics on {metrics_address}: {exc}") from None
        click.echo(f"Scheduler metrics at http://{bound}/metrics")

    # Log lines go through webapp.logs (stderr, LOG_FORMAT). The scheduler's start-up lines ("Added job
    # ...") are worth reading here; a line per run of each job is not.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.INFO)
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
    from webapp.models import AccessToken, AuditEntry, ChannelConfig, WizardDraft
    from webapp.secretbox import SecretUnreadable, box

    secret_box = box()
    count = 0
    with _refused_as_click_error(SecretUnreadable):
        with db.transaction() as session:
            for model in (ChannelConfig, AccessToken, WizardDraft):
                columns = [c.key for c in model.__table__.columns if c.key.endswith("_enc")]
                for row in session.scalars(select(model)):
                    for column in columns:
                        value = getattr(row, column)
                        if value is None:
                            continue
                        try:
                            setattr(row, column, secret_box.rotate(value))
                        except SecretUnreadable:
                            # A wizard draft already unreadable is harmless (the wizard asks for its
                            # secrets again); the channel's own secrets and tokens must all be readable.
                            if model is not WizardDraft:
                                raise
                            continue
                        count += 1
            # In the same transaction: the audit log shows when the key changed, never the keys.
            session.add(AuditEntry(actor="cli", action="secrets.rotate", target="", detail={"count": count}))
    click.echo(f"Re-encrypted {count} stored secret(s) with the current key.")


@click.command("copy-data")
@click.argument("target_url")
@with_appcontext
def copy_data(target_url: str) -> None:
    """Copy all data from the configured database into the empty database TARGET_URL (e.g. SQLite to PostgreSQL).

    The target gets the newest schema and every row, in one transaction: on any failure it is left
    unchanged. Stop the service (at least the scheduler) first, and run the service on the target
    with the same FLASK_SECRET_KEY, since stored secrets are copied encrypted.
    """
    from webapp import datacopy

    click.echo("Stop the service (at least its scheduler) while copying: "
               "anything it writes from now on is not copied.")
    with _refused_as_click_error(datacopy.CopyError):
        target = datacopy.open_target(target_url)
    source, destination = (url.render_as_string(hide_password=True) for url in (db.engine.url, target.url))
    click.echo(f"Copying {source} -> {destination}")
    try:
        with _refused_as_click_error(datacopy.CopyError):
            report = datacopy.copy_data(db.engine, target, progress=click.echo)
    finally:
        target.dispose()
    click.echo(f"Copied {report.total} row(s) in {len(report.rows)} tables; the counts match the source "
               f"(schema revision {report.revision}).")
    click.echo("Start the service on the new database with the same FLASK_SECRET_KEY: "
               "stored secrets were copied encrypted.")


def _password_or_prompt(given: str | None, prompt: str) -> str:
    """The password given on the command line, or else one typed twice without echo."""
    if given is not None:
        return given
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


@contextmanager
def _refused_as_click_error(*refusals: type[Exception]) -> Iterator[None]:
    """Report a refusal of ``refusals`` (whose message is written for a person) as the command's error, exit 1."""
    try:
        yield
    except refusals as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _service_call(*refusals: type[Exception]) -> Iterator[None]:
    """Run a service call as a web request would, reporting its refusals and database failures as command errors.

    The request context is there because the services' sentences (password rules, names taken)
    are translated strings.
    """
    try:
        with _refused_as_click_error(*refusals), current_app.test_request_context():
            yield
    except SQLAlchemyError as exc:
        raise click.ClickException(_database_problem(exc)) from None


def _database_problem(exc: SQLAlchemyError) -> str:
    """What to do about a database that failed a command (usually: not migrated, or not reachable)."""
    if isinstance(exc, OperationalError) and "no such table" in str(exc):
        return "the database has no tables yet: run `flask --app wsgi init-db` first"
    return f"database error ({type(exc).__name__}): run `flask --app wsgi init-db` and check FLASK_DATABASE_URL"
