-- An operator can disable an account (`natter user disable`): its login is
-- refused and its sessions stop working. NULL: enabled. Unix milliseconds.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
