-- Merchant webhooks: where a merchant wants to be told of its payments' events, and the log of
-- every delivery. The dispatcher consumes the events exchange like a projection (one row per
-- endpoint and event, inserted exactly once) and a sender posts the rows, in each payment's
-- order, retrying with backoff.

CREATE TABLE webhook_endpoints
(
    id            uuid PRIMARY KEY,
    merchant_id   text        NOT NULL,
    url           text        NOT NULL,
    -- Event names the endpoint takes; empty: every event.
    event_types   text[]      NOT NULL DEFAULT '{}',
    -- The HMAC key of `Payledger-Signature`; shown to the merchant once, at creation.
    secret        text        NOT NULL,
    -- enabled | disabled (failed past the retry horizon, or by the merchant) | deleted
    status        text        NOT NULL,
    status_reason text,
    -- Since when every delivery to it has failed; NULL while the last one succeeded.
    failing_since timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at);

CREATE TABLE merchant_webhook_deliveries
(
    id               uuid PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id),
    -- `<payment id>/<sequence>`: the `Payledger-Event-Id` a receiver dedupes on.
    event_id         text        NOT NULL,
    payment_id       uuid        NOT NULL,
    sequence         bigint      NOT NULL,
    global_position  bigint      NOT NULL,
    event_type       text        NOT NULL,
    -- The body sent, exactly: every retry sends the same bytes.
    body             text        NOT NULL,
    -- pending | succeeded | failed (given up past the horizon)
    state            text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, event_id)
);

-- The sender's work: the oldest pending delivery of each payment at each endpoint.
CREATE INDEX merchant_webhook_deliveries_pending
    ON merchant_webhook_deliveries (endpoint_id, payment_id, global_position)
    WHERE state = 'pending';
-- An endpoint's log, newest first.
CREATE INDEX merchant_webhook_deliveries_log
    ON merchant_webhook_deliveries (endpoint_id, created_at DESC, id DESC);
