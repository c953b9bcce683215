-- Where the relay is in the (transaction_id, global_position) order. One row: exactly one
-- relay is active (advisory lock), and it advances this only after RabbitMQ confirmed.
CREATE TABLE relay_checkpoint
(
    id                   smallint PRIMARY KEY CHECK (id = 1),
    last_transaction_id  xid8        NOT NULL,
    last_global_position bigint      NOT NULL,
    published_total      bigint      NOT NULL DEFAULT 0,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

INSERT INTO relay_checkpoint (id, last_transaction_id, last_global_position)
VALUES (1, '0'::xid8, 0);
