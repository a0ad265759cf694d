import Foundation
import PostgresNIO

/// The statements of a batch send (`ChatStore.send(batch:)`), prepared once
/// per connection: PostgreSQL parses and plans them once instead of for
/// every batch (planning was about half of their server time).
enum SendStatements {
    /// Locks the chats in id order and says which of the senders are members.
    /// The membership rows come from the statement's snapshot, taken before
    /// any lock wait: a membership change that commits during the wait is
    /// not seen (a send racing a removal by milliseconds may still be stored,
    /// one racing an addition is refused and retried). One statement instead
    /// of two keeps the chat locks held for one round trip less.
    struct LockChats: PostgresPreparedStatement {
        static let sql = """
            SELECT c.id, c.last_seq, m.user_id FROM chats c
            LEFT JOIN chat_members m ON m.chat_id = c.id AND m.user_id = ANY($2::uuid[])
            WHERE c.id = ANY($1::uuid[]) ORDER BY c.id FOR UPDATE OF c
            """
        typealias Row = (UUID, Int64, UUID?)
        let chatIDs: [UUID]
        let senderIDs: [UUID]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 2)
            bindings.append(self.chatIDs)
            bindings.append(self.senderIDs)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// Messages already stored under the sends' (chat, sender, client id).
    struct Resends: PostgresPreparedStatement {
        static let sql = """
            SELECT \(ChatStore.messageColumns) FROM messages m
            JOIN unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS k(c, s, cl)
            ON m.chat_id = k.c AND m.sender_id = k.s AND m.client_id = k.cl
            """
        typealias Row = MessageRecord
        let chatIDs: [UUID]
        let senderIDs: [UUID]
        let clientIDs: [UUID]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 3)
            bindings.append(self.chatIDs)
            bindings.append(self.senderIDs)
            bindings.append(self.clientIDs)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try ChatStore.message(row) }
    }

    /// Inserts the new messages, moves each chat's `last_seq` and the senders'
    /// read positions, in one statement.
    struct Insert: PostgresPreparedStatement {
        static let sql = """
            WITH input AS (
                SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::bigint[])
                AS t(chat_id, seq, id, sender_id, client_id, body, reply_to_seq)
            ), bump AS (
                UPDATE chats c SET last_seq = u.last_seq, activity_at = now()
                FROM (SELECT chat_id, max(seq) AS last_seq FROM input GROUP BY chat_id) u WHERE c.id = u.chat_id
            ), reader AS (
                UPDATE chat_members cm SET last_read_seq = GREATEST(cm.last_read_seq, u.last_seq)
                FROM (SELECT chat_id, sender_id, max(seq) AS last_seq FROM input GROUP BY chat_id, sender_id) u
                WHERE cm.chat_id = u.chat_id AND cm.user_id = u.sender_id
            )
            INSERT INTO messages AS m (chat_id, seq, id, sender_id, client_id, body, reply_to_seq)
            SELECT chat_id, seq, id, sender_id, client_id, NULLIF(body, ''), NULLIF(reply_to_seq, 0) FROM input
            RETURNING \(ChatStore.messageColumns)
            """
        typealias Row = MessageRecord
        let rows: ChatStore.InsertRows

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings(capacity: 7)
            bindings.append(self.rows.chatIDs)
            bindings.append(self.rows.seqs)
            bindings.append(self.rows.ids)
            bindings.append(self.rows.senderIDs)
            bindings.append(self.rows.clientIDs)
            bindings.append(self.rows.bodies)
            bindings.append(self.rows.replies)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try ChatStore.message(row) }
    }
}
