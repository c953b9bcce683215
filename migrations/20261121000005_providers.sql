-- What the customer must still do (redirect URL, cash code) and the fee fixed at approval.
ALTER TABLE payment_status
    ADD COLUMN next_action jsonb,
    ADD COLUMN fee_amount  numeric NOT NULL DEFAULT 0;

-- Every webhook that reached us, verified or not: operators read it to see forged or broken
-- deliveries. Append-only, like the event store.
CREATE TABLE webhook_deliveries
(
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider        text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    signature_valid boolean     NOT NULL,
    peer            text,
    result          text        NOT NULL,
    payload         bytea       NOT NULL
);

CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (provider, received_at DESC);

CREATE FUNCTION webhook_deliveries_are_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'webhook_deliveries is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER webhook_deliveries_append_only
    BEFORE UPDATE OR DELETE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION webhook_deliveries_are_append_only();
