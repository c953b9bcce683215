-- Exactly-once effect: a projection records, in the same transaction as its change, the last
-- sequence it applied per aggregate. Duplicates are skipped; gaps are filled from `events`.
CREATE TABLE projection_offsets
(
    projection    text   NOT NULL,
    aggregate_id  text   NOT NULL,
    last_sequence bigint NOT NULL CHECK (last_sequence >= 0),
    PRIMARY KEY (projection, aggregate_id)
);

-- How far each projection has got in the global order, for lag on /health.
CREATE TABLE projection_progress
(
    projection           text PRIMARY KEY,
    last_global_position bigint      NOT NULL DEFAULT 0,
    last_recorded_at     timestamptz,
    applied_total        bigint      NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payment_status
(
    payment_id              uuid PRIMARY KEY,
    merchant_id             text        NOT NULL,
    reference               text        NOT NULL,
    status                  text        NOT NULL,
    amount                  numeric     NOT NULL,
    currency                text        NOT NULL,
    authorized_amount       numeric     NOT NULL DEFAULT 0,
    captured_amount         numeric     NOT NULL DEFAULT 0,
    refunded_amount         numeric     NOT NULL DEFAULT 0,
    refund_pending_amount   numeric     NOT NULL DEFAULT 0,
    provider                text        NOT NULL,
    provider_transaction_id text,
    payment_method_type     text        NOT NULL,
    capture_mode            text        NOT NULL,
    failure_reason          text,
    provider_attempts_failed integer    NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    version                 bigint      NOT NULL,
    last_global_position    bigint      NOT NULL
);

-- Listing: newest first per merchant, optionally by status, keyset-paginated.
CREATE INDEX payment_status_merchant_list ON payment_status (merchant_id, created_at DESC, payment_id DESC);
CREATE INDEX payment_status_list ON payment_status (created_at DESC, payment_id DESC);
