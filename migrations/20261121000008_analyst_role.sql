-- A read-only role for analysts: SELECT on the projection tables and nothing else (not the
-- event store, not API keys, not webhook payloads). Roles belong to the whole cluster, so the
-- role is created once and the grants are (re)stated per database. Analysts log in as their
-- own users: CREATE USER alice IN ROLE payledger_analyst.
DO
$$
BEGIN
    CREATE ROLE payledger_analyst NOLOGIN;
EXCEPTION
    -- Another database of the cluster (or a concurrent migration) created it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO payledger_analyst;

GRANT SELECT ON
    payment_status,
    analytics_daily,
    analytics_approval_times,
    analytics_payments,
    payment_failures,
    failures_payments,
    journal_entries,
    account_balances,
    merchant_account_balances,
    ledger_payments,
    projection_progress
    TO payledger_analyst;
