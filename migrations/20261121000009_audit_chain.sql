-- The audit chain: in the relay's total order, every event gets a dense `position` (1, 2, 3,
-- ...) and `chain_hash = SHA-256(previous chain_hash || canonical bytes of the event)` (see
-- domain/src/audit.rs for the byte encoding). Written by the relay in the same transaction as
-- its checkpoint, after the broker confirmed the batch. Append-only.
CREATE TABLE audit_chain
(
    position        bigint PRIMARY KEY CHECK (position > 0),
    global_position bigint NOT NULL UNIQUE,
    aggregate_id    text   NOT NULL,
    sequence        bigint NOT NULL,
    chain_hash      bytea  NOT NULL CHECK (length(chain_hash) = 32)
);

CREATE FUNCTION audit_chain_is_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'audit_chain is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_chain_append_only
    BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_is_append_only();

ALTER TABLE relay_checkpoint
    ADD COLUMN last_audit_position bigint NOT NULL DEFAULT 0,
    ADD COLUMN last_chain_hash     bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000';
