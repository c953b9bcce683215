-- API keys have a life: an environment (`live` or `test`, told apart by the key's prefix; a
-- test key is refused in production), an optional expiry, the last time one was used (written
-- at most once a minute per key), and the key a rotation replaced.
ALTER TABLE api_keys
    ADD COLUMN environment  text CHECK (environment IN ('live', 'test')),
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN rotated_from uuid REFERENCES api_keys (id);
-- Keys made before environments existed are live: production accepts them as before.
UPDATE api_keys SET environment = 'live';
ALTER TABLE api_keys ALTER COLUMN environment SET NOT NULL;

-- Every node caches the keys it has seen; a change that can take a key away (revoked, expiry
-- moved, role or merchant changed, deleted) is announced so each node forgets it at once,
-- whether it came from the API, the CLI or plain SQL. `last_used_at` alone announces nothing.
CREATE FUNCTION api_keys_announce() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('payledger_api_keys', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
        OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
        OR OLD.role IS DISTINCT FROM NEW.role
        OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
        OR OLD.environment IS DISTINCT FROM NEW.environment
        OR OLD.key_hash IS DISTINCT FROM NEW.key_hash)
EXECUTE FUNCTION api_keys_announce();

CREATE TRIGGER api_keys_deleted
    AFTER DELETE ON api_keys
    FOR EACH ROW
EXECUTE FUNCTION api_keys_announce();
