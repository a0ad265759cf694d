-- Accounts and sessions, version 2: deleted accounts, more revocation
-- reasons, and revocations found by time.

-- Each gateway keeps the sessions revoked within an access token's lifetime
-- in memory and polls for new ones by time.
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

ALTER TABLE sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_revoked_reason_check
    CHECK (revoked_reason IN ('logout', 'token_reused', 'admin', 'revoked', 'account_deleted', 'taken_over'));

-- A deleted account (DELETE /v1/me, or an unverified account whose email
-- its owner then proved) keeps its row, so that its messages keep a sender:
-- no password, no name, and an address that can never receive mail
-- (deleted+<id>@deleted.invalid, RFC 2606), so the real one is free again.
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_deleted_is_empty
    CHECK (deleted_at IS NULL OR (password_hash IS NULL AND NOT email_verified AND email LIKE 'deleted+%@deleted.invalid'));
