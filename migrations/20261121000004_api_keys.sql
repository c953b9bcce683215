-- API keys are stored as SHA-256 of the key: the keys are 256-bit random, so a plain digest
-- is enough and lets a lookup be one index probe.
CREATE TABLE api_keys
(
    id          uuid PRIMARY KEY,
    key_hash    bytea       NOT NULL UNIQUE,
    key_prefix  text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('checkout', 'analyst', 'auditor', 'admin')),
    merchant_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'checkout') = (merchant_id IS NOT NULL))
);
