-- Mentions and search (PROTOCOL.md 1.1).
--
-- Mentions: a send names members of its chat ("mentions": [user_id], at
-- most 50); stored with the message. `?mentions=me` finds the messages that
-- mention the caller through a GIN index on the array (only messages with
-- mentions are in it).
--
-- Search: every message body is tokenized once, when written, into the
-- stored `search` column: `unaccent` folds accents, the `simple` text search
-- configuration lower-cases and splits on word boundaries without a
-- language's stemming or stop words (any language tokenizes, CJK runs stay
-- whole words). A deleted message has no body, so nothing of it matches.
-- Queries match every word as a prefix (`word:*`) through the GIN index.
CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public;

-- unaccent() is only STABLE (its dictionary could change); a stored column
-- and an index need an IMMUTABLE function, with the dictionary named.
CREATE FUNCTION parley_unaccent(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

ALTER TABLE messages ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, parley_unaccent(coalesce(body, '')))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_mentions ON messages USING gin (mentions) WHERE mentions <> '{}';

-- parley_send_batch as in 006_blocks.sql, with the mentions of each send
-- (p_men_index: the send's index, 1-based; p_men_id: the user) and one more outcome:
--   outcome 'invalid_mentions'  a new send that mentions someone who is not a member of the chat
-- Each row also returns the stored mentions of a resend (NULL for a new
-- message: those of the send). The 8-argument function of 006 stays for
-- gateways of the previous version during a rolling upgrade (it stores no mentions).
CREATE FUNCTION parley_send_batch(
    p_chat uuid[], p_sender uuid[], p_client uuid[], p_id uuid[], p_body text[], p_reply bigint[],
    p_att_index int[], p_att_id uuid[], p_men_index int[], p_men_id uuid[]
) RETURNS TABLE (
    idx int, outcome text, ref_idx int,
    id uuid, seq bigint, body text, reply_to_seq bigint, created_at timestamptz, edited_at timestamptz, deleted_at timestamptz,
    att_ids uuid[], att_types text[], att_sizes int[], mentions uuid[]
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n int := coalesce(array_length(p_chat, 1), 0);
    with_attachments boolean := coalesce(array_length(p_att_index, 1), 0) > 0;
    with_mentions boolean := coalesce(array_length(p_men_index, 1), 0) > 0;
    r record;
    -- the locked chats, their last seqs as found and as assigned
    chat_ids uuid[];
    chat_found bigint[];
    chat_last bigint[];
    -- (chat, sender, client_id) keys created so far, for sends repeated within the batch
    keys text[] := '{}';
    key_first int[] := '{}';
    k text;
    kpos int;
    bad_attachments int[] := '{}';
    bad_mentions int[] := '{}';
    resends boolean := false;
    -- results, by send index
    res_outcome text[] := array_fill(NULL::text, ARRAY[n]);
    res_ref int[] := array_fill(NULL::int, ARRAY[n]);
    res_id uuid[] := array_fill(NULL::uuid, ARRAY[n]);
    res_seq bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    res_body text[] := array_fill(NULL::text, ARRAY[n]);
    res_reply bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    res_created timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    res_edited timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    res_deleted timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    -- the new rows
    new_idx int[] := '{}';
    new_seq bigint[] := '{}';
BEGIN
    IF n = 0 THEN RETURN; END IF;

    -- 1. the chats, locked in id order (waits for batches of other gateways here)
    SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}'), coalesce(array_agg(c.last_seq ORDER BY c.id), '{}')
    INTO chat_ids, chat_found
    FROM (SELECT c.id, c.last_seq FROM chats c WHERE c.id = ANY(p_chat) ORDER BY c.id FOR UPDATE OF c) c;
    chat_last := chat_found;

    -- 2. the sends whose attachments are not the sender's own uploads, each once
    IF with_attachments THEN
        SELECT coalesce(array_agg(x.i), '{}') INTO bad_attachments FROM (
            SELECT a.i FROM unnest(p_att_index, p_att_id) AS a(i, att_id)
            LEFT JOIN LATERAL (
                SELECT u.id FROM attachments u WHERE u.id = a.att_id AND u.owner_id = p_sender[a.i] LIMIT 1
            ) u ON true
            GROUP BY a.i
            HAVING count(u.id) <> count(*) OR count(DISTINCT a.att_id) <> count(*)
        ) x;
    END IF;

    -- 2b. the sends that mention someone who is not a member of the chat
    -- (a read after the lock wait: a member removed meanwhile no longer counts)
    IF with_mentions THEN
        SELECT coalesce(array_agg(DISTINCT x.i), '{}') INTO bad_mentions FROM unnest(p_men_index, p_men_id) AS x(i, user_id)
        WHERE NOT EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = p_chat[x.i] AND cm.user_id = x.user_id);
    END IF;

    -- 3. each send, with what decides it (a new snapshot: after the lock wait).
    -- Every lookup is one probe of a unique index per send: LIMIT keeps the
    -- planner from hashing whole tables (which it does when statistics say
    -- they are small, as they do on a young database).
    FOR r IN
        SELECT t.i::int AS i, t.chat_id, t.reply, c.pos::int AS pos, m.member IS NOT NULL AS member, b.blocked IS NOT NULL AS blocked,
               count(*) OVER (PARTITION BY t.chat_id, t.sender_id, t.client_id) > 1 AS repeated,
               s.id AS s_id, s.seq AS s_seq, s.body AS s_body, s.reply_to_seq AS s_reply,
               s.created_at AS s_created, s.edited_at AS s_edited, s.deleted_at AS s_deleted
        FROM unnest(p_chat, p_sender, p_client, p_reply) WITH ORDINALITY AS t(chat_id, sender_id, client_id, reply, i)
        LEFT JOIN unnest(chat_ids) WITH ORDINALITY AS c(id, pos) ON c.id = t.chat_id
        LEFT JOIN LATERAL (
            SELECT true AS member FROM chat_members m WHERE m.chat_id = t.chat_id AND m.user_id = t.sender_id LIMIT 1
        ) m ON true
        -- a direct chat whose other member blocked the sender (a group stops at its kind)
        LEFT JOIN LATERAL (
            SELECT true AS blocked FROM chats dc
            JOIN chat_members pm ON pm.chat_id = dc.id AND pm.user_id <> t.sender_id
            JOIN user_blocks ub ON ub.blocker_id = pm.user_id AND ub.blocked_id = t.sender_id
            WHERE dc.id = t.chat_id AND dc.kind = 'direct' LIMIT 1
        ) b ON true
        LEFT JOIN LATERAL (
            SELECT s.id, s.seq, s.body, s.reply_to_seq, s.created_at, s.edited_at, s.deleted_at FROM messages s
            WHERE s.chat_id = t.chat_id AND s.sender_id = t.sender_id AND s.client_id = t.client_id LIMIT 1
        ) s ON true
        ORDER BY t.i
    LOOP
        IF r.pos IS NULL OR NOT r.member THEN
            res_outcome[r.i] := 'not_member';
            CONTINUE;
        END IF;
        IF r.blocked AND r.s_id IS NULL THEN
            res_outcome[r.i] := 'blocked';
            CONTINUE;
        END IF;
        IF r.s_id IS NOT NULL THEN
            res_outcome[r.i] := 'resend';
            res_id[r.i] := r.s_id;
            res_seq[r.i] := r.s_seq;
            res_body[r.i] := r.s_body;
            res_reply[r.i] := r.s_reply;
            res_created[r.i] := r.s_created;
            res_edited[r.i] := r.s_edited;
            res_deleted[r.i] := r.s_deleted;
            resends := true;
            CONTINUE;
        END IF;
        IF r.repeated THEN
            k := r.chat_id::text || p_sender[r.i]::text || p_client[r.i]::text;
            kpos := array_position(keys, k);
            IF kpos IS NOT NULL THEN
                res_outcome[r.i] := 'same_as';
                res_ref[r.i] := key_first[kpos];
                CONTINUE;
            END IF;
        END IF;
        IF r.reply <> 0 AND (r.reply < 1 OR r.reply > chat_last[r.pos]) THEN
            res_outcome[r.i] := 'invalid_reply';
            CONTINUE;
        END IF;
        IF with_attachments AND r.i = ANY(bad_attachments) THEN
            res_outcome[r.i] := 'invalid_attachments';
            CONTINUE;
        END IF;
        IF with_mentions AND r.i = ANY(bad_mentions) THEN
            res_outcome[r.i] := 'invalid_mentions';
            CONTINUE;
        END IF;
        chat_last[r.pos] := chat_last[r.pos] + 1;
        IF r.repeated THEN
            keys := keys || k;
            key_first := key_first || r.i;
        END IF;
        res_outcome[r.i] := 'created';
        res_id[r.i] := p_id[r.i];
        res_seq[r.i] := chat_last[r.pos];
        res_body[r.i] := NULLIF(p_body[r.i], '');
        res_reply[r.i] := NULLIF(r.reply, 0);
        res_created[r.i] := now();
        new_idx := new_idx || r.i;
        new_seq := new_seq || chat_last[r.pos];
    END LOOP;

    -- 4. the new messages, the chats' last seqs, the senders' read positions, the attachments
    IF array_length(new_idx, 1) > 0 THEN
        INSERT INTO messages (chat_id, seq, id, sender_id, client_id, body, reply_to_seq, created_at, mentions)
        SELECT p_chat[x.i], x.s, p_id[x.i], p_sender[x.i], p_client[x.i], NULLIF(p_body[x.i], ''), NULLIF(p_reply[x.i], 0), now(),
               CASE WHEN with_mentions THEN coalesce(
                   (SELECT array_agg(mn.user_id ORDER BY mn.o) FROM unnest(p_men_index, p_men_id) WITH ORDINALITY AS mn(i, user_id, o) WHERE mn.i = x.i),
                   '{}') ELSE '{}' END
        FROM unnest(new_idx, new_seq) AS x(i, s);
        UPDATE chats c SET last_seq = x.last_seq, activity_at = now()
        FROM unnest(chat_ids, chat_found, chat_last) AS x(chat_id, found, last_seq)
        WHERE c.id = x.chat_id AND x.last_seq <> x.found;
        UPDATE chat_members cm SET last_read_seq = GREATEST(cm.last_read_seq, u.last_seq)
        FROM (SELECT p_chat[x.i] AS chat_id, p_sender[x.i] AS sender_id, max(x.s) AS last_seq FROM unnest(new_idx, new_seq) AS x(i, s) GROUP BY 1, 2) u
        WHERE cm.chat_id = u.chat_id AND cm.user_id = u.sender_id;
        IF with_attachments THEN
            INSERT INTO message_attachments (chat_id, seq, attachment_id, position)
            SELECT p_chat[a.i], res_seq[a.i], a.att_id, (row_number() OVER (PARTITION BY a.i ORDER BY a.o) - 1)::smallint
            FROM unnest(p_att_index, p_att_id) WITH ORDINALITY AS a(i, att_id, o)
            WHERE res_outcome[a.i] = 'created';
        END IF;
    END IF;

    -- 5. one row per send: new messages and resends as stored, with their
    -- attachments and mentions (NULL mentions: those the send gave)
    IF NOT with_attachments AND NOT resends THEN
        RETURN QUERY
        SELECT t.i::int, t.outcome, t.ref, t.id, t.seq, t.body, t.reply, t.created, NULL::timestamptz, NULL::timestamptz,
               '{}'::uuid[], '{}'::text[], '{}'::int[], NULL::uuid[]
        FROM unnest(res_outcome, res_ref, res_id, res_seq, res_body, res_reply, res_created)
            WITH ORDINALITY AS t(outcome, ref, id, seq, body, reply, created, i);
        RETURN;
    END IF;
    RETURN QUERY
    SELECT t.i::int, t.outcome, t.ref, t.id, t.seq, t.body, t.reply, t.created, t.edited, t.deleted,
           coalesce(att.ids, '{}'), coalesce(att.types, '{}'), coalesce(att.sizes, '{}'), mn.mentions
    FROM unnest(res_outcome, res_ref, res_id, res_seq, res_body, res_reply, res_created, res_edited, res_deleted)
        WITH ORDINALITY AS t(outcome, ref, id, seq, body, reply, created, edited, deleted, i)
    LEFT JOIN LATERAL (
        SELECT array_agg(a.id ORDER BY ma.position) AS ids, array_agg(a.content_type ORDER BY ma.position) AS types,
               array_agg(a.size ORDER BY ma.position) AS sizes
        FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
        WHERE ma.chat_id = p_chat[t.i] AND ma.seq = t.seq
    ) att ON t.id IS NOT NULL AND t.deleted IS NULL
    LEFT JOIN LATERAL (
        SELECT sm.mentions FROM messages sm WHERE sm.chat_id = p_chat[t.i] AND sm.seq = t.seq
    ) mn ON t.id IS NOT NULL
    ORDER BY t.i;
END
$$;
