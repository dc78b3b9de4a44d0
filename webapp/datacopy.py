"""Copy all of the service's data from its database into another one (``flask --app wsgi copy-data``).

Made for moving an installation from SQLite to PostgreSQL, but any pair of supported databases works.
The target is brought to the newest schema with the migrations, must hold no rows, and receives every
table in one transaction: if anything fails, nothing of the copy (not even the schema) stays behind.

Rows are copied as they are, primary keys included, so the links between them survive; PostgreSQL's
id sequences are then moved past the copied ids. Encrypted columns are copied without being read,
which is why the service on the target needs the same ``FLASK_SECRET_KEY``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from alembic import command
from alembic.util import CommandError
from sqlalchemy import JSON, Connection, Engine, Table, column, func, insert, inspect, make_url, select, table, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from webapp import migrate
from webapp.database import make_engine
from webapp.models import Base

#: Rows read from the source and written to the target at a time.
BATCH_SIZE = 500


class CopyError(Exception):
    """The copy was refused or failed; the message says why and what to do. The target is unchanged."""


@dataclass
class CopyReport:
    """What was copied: rows per table in copy order, and the schema revision of the target."""

    revision: str
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All rows copied."""
        return sum(self.rows.values())


def open_target(url: str) -> Engine:
    """An engine for the target URL, tuned like the app's own (SQLite gets WAL and foreign keys).

    Raises :class:`CopyError` with a sentence for a URL that is not one, or names a database kind
    that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CopyError(
            f"{url!r} is not a database URL: write it like postgresql+psycopg://USER:PASSWORD@HOST/DBNAME "
            "or sqlite:////absolute/path/weixin.sqlite3"
        ) from None
    try:
        return make_engine(parsed.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    except NoSuchModuleError:
        raise CopyError(
            f"unknown database kind {parsed.drivername!r}: use postgresql+psycopg:// or sqlite:///"
        ) from None
    except ImportError:
        raise CopyError(
            f"the database driver for {parsed.drivername!r} is not installed: use postgresql+psycopg:// or sqlite:///"
        ) from None


def same_database(source: Engine, target: Engine) -> bool:
    """Whether both engines name the same database (copying onto itself would only destroy it)."""
    a, b = source.url, target.url
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        return bool(a.database) and bool(b.database) and os.path.realpath(a.database) == os.path.realpath(b.database)
    def where(url):
        return url.host or "localhost", url.port or 5432, url.database, url.query

    return where(a) == where(b)


def copy_data(source: Engine, target: Engine, batch_size: int | None = None,
              progress: Callable[[str], None] = lambda line: None) -> CopyReport:
    """Copy every table of ``source`` into the empty ``target`` and return the rows copied per table.

    The target's schema is created or upgraded with the migrations and the copy is made in the same
    transaction, committed only after the row counts of every table match the source. Raises
    :class:`CopyError` (the target left as it was) when the copy is refused or fails.
    """
    batch_size = batch_size or BATCH_SIZE
    if same_database(source, target):
        raise CopyError("the target is the database the service uses now: name another database")
    head = migrate.head_revision()
    _revision(target, "target")  # can it be reached at all? (a clearer sentence than a failed copy)
    source_revision = _revision(source, "source")
    if source_revision != head:
        raise CopyError(
            f"the source database is at schema revision {source_revision or 'none'}, not {head}: "
            "run `flask --app wsgi init-db` on it first"
        )
    tables = Base.metadata.sorted_tables  # parents before children, so foreign keys always resolve
    report = CopyReport(revision=head)
    try:
        with _Snapshot(source) as reading, target.begin() as writing:
            _upgrade(writing)
            _check_tables_match(writing, tables)
            _refuse_rows(writing, tables)
            for tbl in tables:
                report.rows[tbl.name] = _copy_table(reading, writing, tbl, batch_size)
                progress(f"  {tbl.name}: {report.rows[tbl.name]} row(s)")
            _reset_sequences(writing, tables)
            _verify_counts(reading, writing, tables)
    except OperationalError as exc:
        raise CopyError(f"the copy failed and the target was left unchanged: {_reason(exc)}") from None
    except SQLAlchemyError as exc:
        raise CopyError(
            f"the copy failed and the target was left unchanged ({type(exc).__name__}: {_reason(exc)})"
        ) from None
    return report


def _revision(engine: Engine, which: str) -> str | None:
    try:
        return migrate.current_revision(engine)
    except OperationalError as exc:
        raise CopyError(f"cannot open the {which} database: {_reason(exc)}") from None


class _Snapshot:
    """A read-only connection to the source that sees one consistent state for the whole copy."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def __enter__(self) -> Connection:
        connection = self._engine.connect()
        if connection.dialect.name == "postgresql":
            # Rows committed by a still-running service during the copy must not be half-included.
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        self._connection = connection
        connection.begin()  # on SQLite (WAL) an open read transaction is a snapshot too
        return connection

    def __exit__(self, *exc_info) -> None:
        self._connection.rollback()
        self._connection.close()


def _upgrade(connection: Connection) -> None:
    """Run the migrations on the target inside the copy's transaction (PostgreSQL and SQLite roll DDL back)."""
    config = migrate.alembic_config()
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise CopyError(
            f"the target database holds a schema this service does not know ({exc}): name an empty database"
        ) from None


def _check_tables_match(connection: Connection, tables: list[Table]) -> None:
    """After the migrations the target must have exactly the tables the models describe, so none is left out."""
    present = set(inspect(connection).get_table_names()) - {"alembic_version"}
    known = {tbl.name for tbl in tables}
    if present - known:
        raise CopyError(f"the target has tables the copy does not know: {', '.join(sorted(present - known))}")
    if known - present:
        raise CopyError(f"the migrations do not create the tables {', '.join(sorted(known - present))}")


def _refuse_rows(connection: Connection, tables: list[Table]) -> None:
    """Refuse a target that holds data: merging two installations is not what this command does."""
    filled = {tbl.name: n for tbl in tables if (n := _count(connection, tbl))}
    if filled:
        listing = ", ".join(f"{name} ({n})" for name, n in filled.items())
        raise CopyError(
            f"the target database is not empty: it has rows in {listing}. "
            "Copy into a new, empty database; nothing was changed."
        )


def _count(connection: Connection, tbl: Table) -> int:
    return connection.scalar(select(func.count()).select_from(tbl))


def _copy_table(reading: Connection, writing: Connection, tbl: Table, batch_size: int) -> int:
    """Stream one table from the source in primary-key order and insert it in batches; return the rows."""
    target_table = _insertable(tbl)
    rows = reading.execution_options(yield_per=batch_size).execute(select(tbl).order_by(*tbl.primary_key.columns))
    copied = 0
    for batch in rows.mappings().partitions():
        writing.execute(insert(target_table), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def _insertable(tbl: Table):
    """The table as the copy writes it: same columns and types, except that a JSON column stores None as SQL NULL.

    The JSON type otherwise writes None as the JSON text ``null``; both read back as None, but the
    absent values of the source are SQL NULLs and must stay so.
    """
    columns = [
        column(col.name, JSON(none_as_null=True) if isinstance(col.type, JSON) else col.type) for col in tbl.columns
    ]
    return table(tbl.name, *columns)


def _reset_sequences(connection: Connection, tables: list[Table]) -> None:
    """Move PostgreSQL's id sequences past the copied ids, so the next insert does not reuse one.

    (SQLite needs nothing: without AUTOINCREMENT a new row takes the largest id plus one.)
    """
    if connection.dialect.name != "postgresql":
        return
    for tbl in tables:
        pk = tbl.autoincrement_column
        if pk is None:
            continue
        # With rows: the next id is max + 1. Without: setval(..., 1, false) makes the next id 1.
        # Table and column names come from our own models, never from input.
        statement = (f"SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX({pk.name}), 1), "  # nosec B608
                     f"MAX({pk.name}) IS NOT NULL) FROM {tbl.name}")
        connection.execute(
            text(statement),
            {"table": tbl.name, "column": pk.name},
        )


def _verify_counts(reading: Connection, writing: Connection, tables: list[Table]) -> None:
    """Compare the rows of every table on both sides before committing."""
    wrong = [
        f"{tbl.name} (source {s}, target {t})"
        for tbl in tables
        if (s := _count(reading, tbl)) != (t := _count(writing, tbl))
    ]
    if wrong:
        raise CopyError(f"row counts differ after the copy: {', '.join(wrong)}; the target was left unchanged")


def _reason(exc: SQLAlchemyError) -> str:
    """The first line of the database driver's own message (never the statement or its parameters)."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines()
    return first[0] if first else type(original).__name__
