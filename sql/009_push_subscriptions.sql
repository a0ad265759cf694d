-- Web Push subscriptions (PROTOCOL.md 1.1 "Push"): one browser or device
-- of one login session. A push service's endpoint belongs to one browser
-- profile, so it is unique: subscribing it again (another account signed in
-- there) moves it. A subscription lives as long as its session: when the
-- session is revoked (logout, a reused refresh token, account deletion,
-- DELETE /v1/me/sessions/{id}) its subscriptions are deleted, so a device
-- that signed out gets no more message previews.
CREATE TABLE push_subscriptions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    endpoint   text NOT NULL,
    p256dh     bytea NOT NULL CHECK (octet_length(p256dh) = 65),
    auth       bytea NOT NULL CHECK (octet_length(auth) = 16),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_subscriptions_endpoint_length CHECK (char_length(endpoint) BETWEEN 1 AND 2048)
);
CREATE UNIQUE INDEX push_subscriptions_endpoint ON push_subscriptions (endpoint);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
CREATE INDEX push_subscriptions_session ON push_subscriptions (session_id);

CREATE FUNCTION parley_drop_revoked_push_subscriptions() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM push_subscriptions WHERE session_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_revoked_drop_push
    AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION parley_drop_revoked_push_subscriptions();
