-- Finding a payment by the merchant's own order reference, newest first.
CREATE INDEX payment_status_merchant_reference
    ON payment_status (merchant_id, reference, created_at DESC, payment_id DESC);
