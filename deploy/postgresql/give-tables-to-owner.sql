-- Give every table of the service's schema to the owner of the database: the service's role.
--
-- After a dump was restored by another role (a superuser such as postgres), the tables belong to that
-- role and `flask --app wsgi init-db` stops with "the database role ... is not allowed to use the
-- table alembic_version". Run this as a superuser in the service's database, for example
--     sudo -u postgres psql --dbname=weixin --file=/opt/weixin-notify/deploy/postgresql/give-tables-to-owner.sql
-- The database itself must belong to the service's role (createdb --owner weixin weixin, or
-- ALTER DATABASE weixin OWNER TO weixin). The id sequences of the tables follow their tables.
DO $$
DECLARE
    service_role name := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database());
    item record;
BEGIN
    FOR item IN SELECT schemaname, tablename FROM pg_tables
                WHERE schemaname = current_schema() AND tableowner <> service_role LOOP
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', item.schemaname, item.tablename, service_role);
        RAISE NOTICE 'table %.% now belongs to %', item.schemaname, item.tablename, service_role;
    END LOOP;
END
$$;
