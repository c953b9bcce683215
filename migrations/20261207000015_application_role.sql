-- The service's own role. payledger connects as a login role that is a member of it
-- (`CREATE ROLE payledger_service LOGIN PASSWORD '...' IN ROLE payledger_app`); migrations,
-- `replay` and `audit verify` run as the owner of the tables. The owner may disable the
-- triggers that keep the stream immutable; this role may not: it can only append to the
-- event stream, the audit chain and the webhook log, and read them.
DO
$$
BEGIN
    CREATE ROLE payledger_app NOLOGIN;
EXCEPTION
    -- Another database of the cluster (or a concurrent migration) created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO payledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO payledger_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO payledger_app;
-- Tables later migrations create are the service's to read and write too; an append-only one
-- revokes what it must, as below.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO payledger_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO payledger_app;

REVOKE UPDATE, DELETE, TRUNCATE ON events, audit_chain, webhook_deliveries FROM payledger_app;
