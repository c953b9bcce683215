-- Some providers charge a saved card only after the customer has verified it (3-D Secure at
-- Maya). The vault keeps where to send the customer until the provider says it is done; the
-- read model shows whether a method can be charged yet.
ALTER TABLE saved_method_sources ADD COLUMN verification_url text;

ALTER TABLE customer_payment_methods
    ADD COLUMN status text NOT NULL DEFAULT 'ACTIVE'
        CHECK (status IN ('ACTIVE', 'AWAITING_VERIFICATION'));
