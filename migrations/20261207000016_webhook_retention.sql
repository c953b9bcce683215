-- The webhook log keeps what an operator needs and no more. A delivery that did not verify
-- keeps its digest, its size and its first bytes (anyone can send one: a full body each
-- would let anyone fill the disk). A verified one keeps its body, personal data included,
-- until the retention job erases it (`payledger retention`); the job also deletes old rows.
-- Both are allowed only past a floor, whatever the job is told, and only to its own role.
ALTER TABLE webhook_deliveries
    ADD COLUMN payload_sha256 bytea,
    ADD COLUMN payload_bytes  integer,
    ADD COLUMN erased_at      timestamptz,
    ALTER COLUMN payload DROP NOT NULL;

ALTER TABLE webhook_deliveries DISABLE TRIGGER webhook_deliveries_append_only;
UPDATE webhook_deliveries
   SET payload_sha256 = sha256(payload),
       payload_bytes  = length(payload),
       payload        = CASE WHEN signature_valid THEN payload ELSE substring(payload FROM 1 FOR 256) END;
ALTER TABLE webhook_deliveries ENABLE TRIGGER webhook_deliveries_append_only;

CREATE OR REPLACE FUNCTION webhook_deliveries_are_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    -- Deleting a row a week old or more.
    IF TG_OP = 'DELETE' AND OLD.received_at < now() - interval '7 days' THEN
        RETURN OLD;
    END IF;
    -- Erasing a body a day old or more, and changing nothing else.
    IF TG_OP = 'UPDATE' AND OLD.received_at < now() - interval '1 day'
        AND NEW.payload IS NULL AND NEW.erased_at IS NOT NULL
        AND (NEW.id, NEW.provider, NEW.received_at, NEW.signature_valid, NEW.peer, NEW.result,
             NEW.payload_sha256, NEW.payload_bytes)
            IS NOT DISTINCT FROM
            (OLD.id, OLD.provider, OLD.received_at, OLD.signature_valid, OLD.peer, OLD.result,
             OLD.payload_sha256, OLD.payload_bytes) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'webhook_deliveries is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- The retention job's role: the only one besides the owner that may erase or delete.
DO
$$
BEGIN
    CREATE ROLE payledger_retention NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO payledger_retention;
GRANT SELECT, DELETE ON webhook_deliveries TO payledger_retention;
GRANT UPDATE (payload, erased_at) ON webhook_deliveries TO payledger_retention;
