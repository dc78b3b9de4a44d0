"""The schema is built by Alembic migrations, on SQLite and PostgreSQL, and init-db is repeatable."""
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text

from webapp import migrate
from webapp.models import Base

EXPECTED_TABLES = {
    "users", "api_apps", "channel_config", "bindings", "bind_tickets", "access_tokens",
    "messages", "deliveries", "audit_log", "login_failures", "app_state",
}


def _check_schema(engine):
    tables = set(inspect(engine).get_table_names())
    assert EXPECTED_TABLES <= tables
    assert migrate.current_revision(engine) == migrate.head_revision()
    # The migrations build exactly what the models describe.
    for table in Base.metadata.sorted_tables:
        columns = {c["name"] for c in inspect(engine).get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_upgrade_on_sqlite_twice(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # a second run changes nothing and does not fail
    _check_schema(engine)


def test_binding_rules_are_enforced_by_the_schema(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, username, display_name, password_hash, is_admin, enabled, created_at) "
                          "VALUES (1,'u','','x',0,1,'2026-01-01'), (2,'v','','x',0,1,'2026-01-01')"))
        insert = text("INSERT INTO bindings (user_id, channel, account, wx_id, active, created_at) "
                      "VALUES (:u, 'mp', 'wxA', :w, :a, '2026-01-01')")
        conn.execute(insert, {"u": 1, "w": "openid-1", "a": True})
    # One WeChat identity cannot belong to two users of the same account.
    with pytest.raises(Exception):
        with engine.begin() as conn:
            conn.execute(insert, {"u": 2, "w": "openid-1", "a": True})
    # A user cannot have two active bindings on one account...
    with pytest.raises(Exception):
        with engine.begin() as conn:
            conn.execute(insert, {"u": 1, "w": "openid-2", "a": True})
    # ...but may keep inactive ones.
    with engine.begin() as conn:
        conn.execute(insert, {"u": 1, "w": "openid-3", "a": False})


@pytest.mark.postgres
def test_upgrade_on_postgresql_twice(postgres_url):
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(postgres_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)
        _check_schema(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
