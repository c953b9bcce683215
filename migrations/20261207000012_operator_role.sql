-- Operators: a key that sees health, metrics and the dashboard, and can issue no command.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check
    CHECK (role IN ('checkout', 'analyst', 'auditor', 'admin', 'operator'));
