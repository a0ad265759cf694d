-- Edits keep history: each edit stores the body it replaced, so that the
-- sender and the chat's owner and admins can see what a message said before
-- (GET /v1/chats/{id}/messages/{seq}/edits). Deleting the message (or the
-- sender's account) deletes its history with its body: a tombstone keeps
-- only its seq.
CREATE TABLE message_edits (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- edit order (edited_at may tie)
    chat_id       uuid NOT NULL,
    seq           bigint NOT NULL,
    previous_body text,                                             -- NULL: the message had attachments only
    -- when the body above was replaced (clock time: edits of one message are serialised by its row lock)
    edited_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (chat_id, seq) REFERENCES messages (chat_id, seq) ON DELETE CASCADE
);

CREATE INDEX message_edits_message ON message_edits (chat_id, seq, id);
