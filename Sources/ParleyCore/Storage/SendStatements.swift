import Foundation
import PostgresNIO

/// The one statement of a batch send (`ChatStore.send(batch:deadline:)`):
/// the server-side function `parley_send_batch` (sql/003_send_batch.sql, last replaced in 007_mentions_search.sql),
/// prepared once per connection. Executed on its own, outside any explicit
/// transaction, it is its own transaction: one round trip per batch, and
/// the chats' locks are held only while the server runs it and commits.
///
/// Acknowledging on its rows relies on PostgreSQL committing an implicit
/// transaction before it reports the statement complete, and on nothing
/// that can fail at commit time: no deferred constraints, commit triggers or
/// synchronous replication whose wait can be cancelled. Adding any of those
/// means wrapping the call in an explicit transaction and acknowledging
/// after its COMMIT.
struct SendBatchStatement: PostgresPreparedStatement {
    static let sql = "SELECT * FROM parley_send_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    /// What became of one send.
    struct Row: Sendable {
        var outcome: String
        var ref: Int32?
        var id: UUID?
        var seq: Int64?
        var body: String?
        var reply: Int64?
        var createdAt: Date?
        var editedAt: Date?
        var deletedAt: Date?
        var attachmentIDs: [UUID]
        var attachmentTypes: [String]
        var attachmentSizes: [Int32]
        /// A resend's stored mentions (nil for a new message: the send's).
        var mentions: [UUID]?
    }

    let sends: [NewMessage]
    let ids: [UUID]

    init(_ sends: [NewMessage]) {
        self.sends = sends
        self.ids = sends.map { _ in UUID.v7() }
    }

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 10)
        bindings.append(self.sends.map(\.chatID))
        bindings.append(self.sends.map(\.senderID))
        bindings.append(self.sends.map(\.clientID))
        bindings.append(self.ids)
        // arrays carry no NULLs here: "" is no body (a valid body is never empty), 0 no reply (seqs start at 1)
        bindings.append(self.sends.map { $0.body ?? "" })
        bindings.append(self.sends.map { $0.replyToSeq ?? 0 })
        for list in [\NewMessage.attachmentIDs, \NewMessage.mentions] {
            let (indexes, ids) = Self.flattened(self.sends, list)
            bindings.append(indexes)
            bindings.append(ids)
        }
        return bindings
    }

    /// A list of ids per send as two parallel arrays: the send's index
    /// (1-based) and the id, in order (the function's `p_att_*`, `p_men_*`).
    static func flattened(_ sends: [NewMessage], _ list: KeyPath<NewMessage, [UUID]>) -> (indexes: [Int32], ids: [UUID]) {
        var indexes: [Int32] = []
        var ids: [UUID] = []
        for (index, send) in sends.enumerated() {
            for id in send[keyPath: list] {
                indexes.append(Int32(index + 1))
                ids.append(id)
            }
        }
        return (indexes, ids)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        let (_, outcome, ref, id, seq, body, reply, created, edited, deleted, ids, types, sizes, mentions) = try row.decode(
            (Int32, String, Int32?, UUID?, Int64?, String?, Int64?, Date?, Date?, Date?, [UUID], [String], [Int32], [UUID]?).self
        )
        return Row(
            outcome: outcome, ref: ref, id: id, seq: seq, body: body, reply: reply, createdAt: created, editedAt: edited, deletedAt: deleted,
            attachmentIDs: ids, attachmentTypes: types, attachmentSizes: sizes, mentions: mentions
        )
    }
}
