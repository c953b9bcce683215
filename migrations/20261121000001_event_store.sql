-- The event store. Columns up to `metadata` are postgres-es's own; the rest are filled by
-- defaults so postgres-es need not know about them:
--   global_position  one total order for readers (assigned at insert, so it has gaps and is
--                    not commit order: the relay also needs transaction_id, see below)
--   transaction_id   the inserting transaction; with pg_snapshot_xmin it lets the relay read
--                    only what can no longer be overtaken by a late commit
--   recorded_at      when the store accepted the event
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The relay's read order.
CREATE INDEX events_feed_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_global_position ON events (global_position);

-- Events are facts: never updated, never deleted. A schema change is an upcaster.
CREATE FUNCTION events_are_immutable() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'events are immutable: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_immutable
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();

CREATE TRIGGER events_immutable_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- Wakes the relay at commit. Only a hint: NOTIFY coalesces and is lost when nobody listens,
-- so the relay polls as well.
CREATE FUNCTION events_notify_relay() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('payledger_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_wake_relay
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify_relay();

-- postgres-es reads this table only in snapshot mode; kept so its queries never fail.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- A merchant's reference names one payment. Kept beside the stream, not as an index on
-- `events`, because postgres-es reports any unique violation there as a concurrency conflict.
CREATE TABLE merchant_references
(
    merchant_id text        NOT NULL,
    reference   text        NOT NULL,
    payment_id  uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, reference)
);
