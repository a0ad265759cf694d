-- Reactions (PROTOCOL.md 1.1): one row per member, message and emoji.
-- History pages read them with the messages (one aggregate per row in the
-- same query); deleting the message, or the reacting account, removes them.
CREATE TABLE message_reactions (
    chat_id    uuid NOT NULL,
    seq        bigint NOT NULL,
    emoji      text NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 32),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (chat_id, seq, emoji, user_id),
    FOREIGN KEY (chat_id, seq) REFERENCES messages (chat_id, seq) ON DELETE CASCADE
);

-- an account's reactions, for its deletion
CREATE INDEX message_reactions_user ON message_reactions (user_id);
