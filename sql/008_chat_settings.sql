-- Per-chat notification settings (PROTOCOL.md 1.1), one per member:
--   notify       'all' (every message), 'mentions' (only messages that
--                mention the member), 'none' (nothing)
--   muted_until  until then only mentions notify (unless notify is 'none');
--                NULL or a past time: not muted
-- Every notification channel honours them (the mail digests today).
ALTER TABLE chat_members
    ADD COLUMN notify text NOT NULL DEFAULT 'all' CHECK (notify IN ('all', 'mentions', 'none')),
    ADD COLUMN muted_until timestamptz;

-- Whether a message notifies a member with these settings: never with
-- 'none'; a mention always otherwise; any other message only with 'all'
-- and not muted. The one definition every notification query uses.
CREATE FUNCTION parley_notifies(p_notify text, p_muted_until timestamptz, p_mentioned boolean) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE p_notify WHEN 'none' THEN false WHEN 'mentions' THEN p_mentioned
                  ELSE p_mentioned OR p_muted_until IS NULL OR p_muted_until <= now() END $$;
