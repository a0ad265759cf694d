public import Foundation
import Logging
public import NIOCore
import PostgresNIO

/// What a send asks for.
public struct NewMessage: Sendable {
    public var chatID: UUID
    public var senderID: UUID
    public var clientID: UUID
    public var body: String?
    public var attachmentIDs: [UUID]
    public var replyToSeq: Int64?
    /// Members of the chat, each once (the store refuses anyone else).
    public var mentions: [UUID]

    public init(
        chatID: UUID, senderID: UUID, clientID: UUID, body: String?, attachmentIDs: [UUID] = [], replyToSeq: Int64? = nil, mentions: [UUID] = []
    ) {
        self.chatID = chatID
        self.senderID = senderID
        self.clientID = clientID
        self.body = body
        self.attachmentIDs = attachmentIDs
        self.replyToSeq = replyToSeq
        self.mentions = mentions
    }
}

/// What became of one send of a batch: the stored message (`created` false
/// for a resend of a `client_id` already used), or the refusal.
public typealias SendOutcome = Result<(message: MessageRecord, created: Bool), ChatError>

extension ChatStore {
    /// Stores several sends together (group commit), in one server-side
    /// call (`parley_send_batch`, one round trip) that must finish within
    /// `deadline` (a lock wait included). Each send gets its chat's next seq
    /// in the order given, the original message for a resend (also of a send
    /// earlier in the same batch), or its refusal; refusals do not affect the
    /// others. Throws only when the call fails, and then nothing of the batch
    /// is stored.
    ///
    /// The chat rows are locked in id order, so concurrent batches (on any
    /// instance) touching the same chats wait for each other instead of
    /// deadlocking, and seqs stay gapless; memberships and earlier sends are
    /// read after the lock wait. Messages are never removed (a delete leaves
    /// a tombstone), so a reply target exists iff it is a seq between 1 and
    /// the chat's last seq.
    public func send(batch: [NewMessage], deadline: Duration) async throws -> [SendOutcome] {
        guard !batch.isEmpty else { return [] }
        let statement = SendBatchStatement(batch)
        let rows = try await self.database.execute(statement, logger: self.logger, deadline: deadline)
        guard rows.count == batch.count else { throw StoreError("parley_send_batch returned \(rows.count) rows for \(batch.count) sends") }
        var outcomes: [SendOutcome] = []
        outcomes.reserveCapacity(batch.count)
        for (new, row) in zip(batch, rows) {
            switch row.outcome {
            case "created", "resend":
                guard let id = row.id, let seq = row.seq, let createdAt = row.createdAt else { throw StoreError("a stored send without its message") }
                let attachments = zip(row.attachmentIDs, zip(row.attachmentTypes, row.attachmentSizes)).map {
                    AttachmentRef(id: $0.0, contentType: $0.1.0, size: Int($0.1.1))
                }
                let message = MessageRecord(
                    id: id, chatID: new.chatID, seq: seq, senderID: new.senderID, clientID: new.clientID, body: row.body, attachments: attachments,
                    replyToSeq: row.reply, createdAt: createdAt, editedAt: row.editedAt, deletedAt: row.deletedAt,
                    // a new message has none yet; a resend's are not read here
                    reactions: row.outcome == "created" ? [] : nil,
                    // a new message's are the send's; a resend's as stored
                    mentions: row.mentions ?? new.mentions
                )
                outcomes.append(.success((message, row.outcome == "created")))
            case "same_as":
                guard let ref = row.ref, ref >= 1, Int(ref) <= outcomes.count else { throw StoreError("same_as names no earlier send") }
                outcomes.append(outcomes[Int(ref) - 1].map { ($0.message, false) })
            case "not_member": outcomes.append(.failure(.chatNotFound))
            case "blocked": outcomes.append(.failure(.blocked))
            case "invalid_reply": outcomes.append(.failure(.invalidReply))
            case "invalid_attachments": outcomes.append(.failure(.invalidAttachments))
            case "invalid_mentions": outcomes.append(.failure(.invalidMentions))
            default: throw StoreError("parley_send_batch: unknown outcome \(row.outcome)")
            }
        }
        return outcomes
    }

    /// The attachments of one message, in order, inside a transaction.
    static func attachments(on connection: PostgresConnection, chatID: UUID, seq: Int64, logger: Logger) async throws -> [AttachmentRef] {
        var attachments: [AttachmentRef] = []
        for try await (id, type, size) in try await connection.query(
            """
            SELECT a.id, a.content_type, a.size FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
            WHERE ma.chat_id = \(chatID) AND ma.seq = \(seq) ORDER BY ma.position
            """,
            logger: logger
        ).decode((UUID, String, Int).self) {
            attachments.append(AttachmentRef(id: id, contentType: type, size: size))
        }
        return attachments
    }

    /// A page of history in ascending seq. With `after`: the oldest messages
    /// after it; otherwise the newest before `before` (or the newest of all).
    /// `hasMore` says whether more exist further in the paging direction.
    /// One query when the page has no attachments: the membership check rides
    /// along with it (an empty page checks membership on its own, to tell
    /// "not a member" from "nothing there").
    public func history(chatID: UUID, viewer: UUID, before: Int64?, after: Int64?, limit: Int) async throws -> (messages: [MessageRecord], hasMore: Bool) {
        let page = try await self.page(chatID: chatID, viewer: viewer, before: before, after: after, limit: limit)
        if page.messages.isEmpty, try await self.role(of: viewer, in: chatID) == nil { throw ChatError.chatNotFound }
        return page
    }

    /// History without a membership check, for callers that did it (the realtime resume).
    public func messages(chatID: UUID, before: Int64?, after: Int64?, limit: Int) async throws -> (messages: [MessageRecord], hasMore: Bool) {
        try await self.page(chatID: chatID, viewer: nil, before: before, after: after, limit: limit)
    }

    private func page(chatID: UUID, viewer: UUID?, before: Int64?, after: Int64?, limit: Int) async throws -> (messages: [MessageRecord], hasMore: Bool) {
        let upper = before ?? Int64.max
        // a viewer's page carries each message's reactions as that viewer sees
        // them, most used first, aggregated in the same query
        var query: PostgresQuery
        if let viewer {
            query = """
                SELECT \(unescaped: Self.messageColumns),
                    EXISTS (SELECT 1 FROM message_attachments ma WHERE ma.chat_id = m.chat_id AND ma.seq = m.seq) AS has_attachments,
                    r.emoji, r.counts, r.mine
                FROM messages m
                LEFT JOIN LATERAL (
                    SELECT array_agg(x.emoji ORDER BY x.n DESC, x.first) AS emoji, array_agg(x.n ORDER BY x.n DESC, x.first) AS counts,
                           array_agg(x.me ORDER BY x.n DESC, x.first) AS mine
                    FROM (SELECT mr.emoji, count(*) AS n, bool_or(mr.user_id = \(viewer)) AS me, min(mr.created_at) AS first
                          FROM message_reactions mr WHERE mr.chat_id = m.chat_id AND mr.seq = m.seq GROUP BY mr.emoji) x
                ) r ON m.deleted_at IS NULL
                WHERE m.chat_id = \(chatID) AND m.seq > \(after ?? 0) AND m.seq < \(upper)
                  AND EXISTS (SELECT 1 FROM chat_members cm WHERE cm.chat_id = m.chat_id AND cm.user_id = \(viewer))
                """
        } else {
            query = """
                SELECT \(unescaped: Self.messageColumns),
                    EXISTS (SELECT 1 FROM message_attachments ma WHERE ma.chat_id = m.chat_id AND ma.seq = m.seq) AS has_attachments,
                    NULL::text[], NULL::bigint[], NULL::boolean[]
                FROM messages m WHERE m.chat_id = \(chatID) AND m.seq > \(after ?? 0) AND m.seq < \(upper)
                """
        }
        query.sql += after != nil ? " ORDER BY m.seq ASC" : " ORDER BY m.seq DESC"
        query.sql += " LIMIT $\(query.binds.count + 1)"
        query.binds.append(limit + 1)
        var messages: [MessageRecord] = []
        var withAttachments: [(UUID, Int64)] = []
        for try await row in try await self.database.query(query, logger: self.logger) {
            let (id, chat, seq, sender, clientID, body, reply, created, edited, deleted, mentions, hasAttachments, emoji, counts, mine) = try row.decode(
                (UUID, UUID, Int64, UUID, UUID, String?, Int64?, Date, Date?, Date?, [UUID], Bool, [String]?, [Int64]?, [Bool]?).self
            )
            messages.append(MessageRecord(
                id: id, chatID: chat, seq: seq, senderID: sender, clientID: clientID, body: body, attachments: [], replyToSeq: reply,
                createdAt: created, editedAt: edited, deletedAt: deleted,
                reactions: viewer == nil ? nil : Self.reactions(emoji, counts, mine), mentions: mentions
            ))
            if hasAttachments, deleted == nil { withAttachments.append((chat, seq)) }
        }
        let hasMore = messages.count > limit
        messages = Array(messages.prefix(limit))
        if after == nil { messages.reverse() }
        let attachments = try await self.attachments(of: withAttachments)
        for index in messages.indices {
            messages[index].attachments = attachments[Key(messages[index].chatID, messages[index].seq)] ?? []
        }
        return (messages, hasMore)
    }

    /// Reactions from the three parallel arrays a query aggregates (most used first).
    static func reactions(_ emoji: [String]?, _ counts: [Int64]?, _ mine: [Bool]?) -> [ReactionCount] {
        guard let emoji, let counts, let mine, emoji.count == counts.count, counts.count == mine.count else { return [] }
        return (0..<emoji.count).map { ReactionCount(emoji: emoji[$0], count: Int(counts[$0]), me: mine[$0]) }
    }

    /// One message's reactions as `viewer` sees them, most used first (read
    /// as a one-message page, so that they are counted and ordered as there).
    public func reactions(chatID: UUID, seq: Int64, viewer: UUID) async throws -> [ReactionCount] {
        guard seq > 0, seq < Int64.max else { return [] }
        return try await self.page(chatID: chatID, viewer: viewer, before: seq + 1, after: seq - 1, limit: 1).messages.first?.reactions ?? []
    }

    /// Adds (or removes) `userID`'s reaction `emoji` to a message; returns
    /// whether anything changed (adding twice, or removing what is not
    /// there, changes nothing). Members only; not on a deleted message; at
    /// most `MessageValidation.maxReactionEmoji` different emoji per message.
    public func react(chatID: UUID, seq: Int64, userID: UUID, emoji: String, add: Bool) async throws -> Bool {
        try await self.database.transaction(logger: self.logger) { connection in
            // the message's row lock serialises its reactions, so the distinct-emoji limit holds
            let (message, _) = try await self.lockedMessage(connection, chatID: chatID, seq: seq, actor: userID, attachments: false)
            guard add else {
                var removed = false
                for try await _ in try await connection.query(
                    "DELETE FROM message_reactions WHERE chat_id = \(chatID) AND seq = \(seq) AND emoji = \(emoji) AND user_id = \(userID) RETURNING 1",
                    logger: self.logger
                ) {
                    removed = true
                }
                return removed
            }
            guard !message.isDeleted else { throw ChatError.messageDeletedReaction }
            try await self.refuseIfBlockedInDirectChat(chatID, actor: userID, on: connection)
            for try await (distinct, present) in try await connection.query(
                "SELECT count(DISTINCT emoji), coalesce(bool_or(emoji = \(emoji)), false) FROM message_reactions WHERE chat_id = \(chatID) AND seq = \(seq)",
                logger: self.logger
            ).decode((Int64, Bool).self) {
                guard present || distinct < MessageValidation.maxReactionEmoji else { throw ChatError.tooManyReactions }
            }
            var added = false
            for try await _ in try await connection.query(
                """
                INSERT INTO message_reactions (chat_id, seq, emoji, user_id) VALUES (\(chatID), \(seq), \(emoji), \(userID))
                ON CONFLICT DO NOTHING RETURNING 1
                """,
                logger: self.logger
            ) {
                added = true
            }
            return added
        }
    }

    /// Edits the body (sender only, not once deleted).
    public func edit(chatID: UUID, seq: Int64, actor: UUID, body: String) async throws -> MessageRecord {
        try await self.database.transaction(logger: self.logger) { connection in
            let message = try await self.lockedMessage(connection, chatID: chatID, seq: seq, actor: actor).message
            guard message.senderID == actor else { throw ChatError.notAllowed("only the sender can edit a message") }
            guard !message.isDeleted else { throw ChatError.messageDeleted }
            try await self.refuseIfBlockedInDirectChat(chatID, actor: actor, on: connection)
            if message.body != body {
                // the history keeps the body this edit replaces
                try await connection.query(
                    "INSERT INTO message_edits (chat_id, seq, previous_body) VALUES (\(chatID), \(seq), \(message.body))", logger: self.logger
                )
            }
            var edited: MessageRecord?
            for try await row in try await connection.query(
                """
                UPDATE messages AS m SET body = \(body), edited_at = now() WHERE chat_id = \(chatID) AND seq = \(seq)
                RETURNING \(unescaped: Self.messageColumns)
                """,
                logger: self.logger
            ) {
                edited = try Self.message(row)
            }
            guard var edited else { throw ChatError.messageNotFound }
            edited.attachments = message.attachments
            return edited
        }
    }

    /// Deletes a message (sender, owner or admin): a tombstone keeps its seq.
    /// Returns the tombstone, and whether this call deleted it.
    public func delete(chatID: UUID, seq: Int64, actor: UUID) async throws -> (message: MessageRecord, deleted: Bool) {
        try await self.database.transaction(logger: self.logger) { connection in
            let (message, role) = try await self.lockedMessage(connection, chatID: chatID, seq: seq, actor: actor)
            guard message.senderID == actor || role.canManage else {
                throw ChatError.notAllowed("only the sender, the owner or an admin can delete a message")
            }
            if message.isDeleted { return (message, false) }
            var tombstone: MessageRecord?
            for try await row in try await connection.query(
                """
                UPDATE messages AS m SET body = NULL, deleted_at = now() WHERE chat_id = \(chatID) AND seq = \(seq)
                RETURNING \(unescaped: Self.messageColumns)
                """,
                logger: self.logger
            ) {
                tombstone = try Self.message(row)
            }
            try await connection.query("DELETE FROM message_attachments WHERE chat_id = \(chatID) AND seq = \(seq)", logger: self.logger)
            try await connection.query("DELETE FROM message_edits WHERE chat_id = \(chatID) AND seq = \(seq)", logger: self.logger)
            try await connection.query("DELETE FROM message_reactions WHERE chat_id = \(chatID) AND seq = \(seq)", logger: self.logger)
            guard var tombstone else { throw ChatError.messageNotFound }
            tombstone.reactions = []  // removed with the body, for every viewer
            return (tombstone, true)
        }
    }

    /// The earlier versions of a message, oldest first: each body with the
    /// time an edit replaced it. Only the sender and the chat's owner and
    /// admins may read them; a deleted message has none.
    public func edits(chatID: UUID, seq: Int64, viewer: UUID) async throws -> [MessageEditRecord] {
        let rows = try await self.database.query(
            """
            SELECT cm.role, m.sender_id, m.deleted_at IS NOT NULL FROM chat_members cm
            LEFT JOIN messages m ON m.chat_id = cm.chat_id AND m.seq = \(seq)
            WHERE cm.chat_id = \(chatID) AND cm.user_id = \(viewer)
            """,
            logger: self.logger
        ).decode((String, UUID?, Bool?).self).elements
        guard let (rawRole, sender, deleted) = rows.first, let role = MemberRole(rawValue: rawRole) else { throw ChatError.chatNotFound }
        guard let sender else { throw ChatError.messageNotFound }
        guard sender == viewer || role.canManage else {
            throw ChatError.notAllowed("only the sender, the owner or an admin can see earlier versions of a message")
        }
        // a tombstone keeps only its seq (its history is deleted with it; this also
        // covers a row an edit racing the deletion could have left)
        if deleted == true { return [] }
        return try await self.database.query(
            "SELECT previous_body, edited_at FROM message_edits WHERE chat_id = \(chatID) AND seq = \(seq) ORDER BY id",
            logger: self.logger
        ).decode((String?, Date).self).elements.map { MessageEditRecord(body: $0.0, replacedAt: $0.1) }
    }

    /// A blocked user neither edits nor reacts in the blocker's direct chat.
    private func refuseIfBlockedInDirectChat(_ chatID: UUID, actor: UUID, on connection: PostgresConnection) async throws {
        for try await _ in try await connection.query(Self.blockedInDirectChat(chatID, actor: actor), logger: self.logger) {
            throw ChatError.blocked
        }
    }

    private func lockedMessage(
        _ connection: PostgresConnection, chatID: UUID, seq: Int64, actor: UUID, attachments: Bool = true
    ) async throws -> (message: MessageRecord, role: MemberRole) {
        var role: MemberRole?
        for try await r in try await connection.query(
            "SELECT role FROM chat_members WHERE chat_id = \(chatID) AND user_id = \(actor)", logger: self.logger
        ).decode(String.self) {
            role = MemberRole(rawValue: r)
        }
        guard let role else { throw ChatError.chatNotFound }
        var message: MessageRecord?
        for try await row in try await connection.query(
            "SELECT \(unescaped: Self.messageColumns) FROM messages m WHERE m.chat_id = \(chatID) AND m.seq = \(seq) FOR UPDATE",
            logger: self.logger
        ) {
            message = try Self.message(row)
        }
        guard var message else { throw ChatError.messageNotFound }
        if attachments { message.attachments = try await Self.attachments(on: connection, chatID: chatID, seq: seq, logger: self.logger) }
        return (message, role)
    }

    /// Moves the reader's position forward only, never past the chat's last
    /// seq. Returns the new position, or nil when it did not move.
    public func markRead(chatID: UUID, userID: UUID, seq: Int64) async throws -> Int64? {
        guard try await self.role(of: userID, in: chatID) != nil else { throw ChatError.chatNotFound }
        for try await position in try await self.database.query(
            """
            UPDATE chat_members cm SET last_read_seq = LEAST(\(seq), c.last_seq)
            FROM chats c
            WHERE cm.chat_id = \(chatID) AND cm.user_id = \(userID) AND c.id = cm.chat_id AND LEAST(\(seq), c.last_seq) > cm.last_read_seq
            RETURNING cm.last_read_seq
            """,
            logger: self.logger
        ).decode(Int64.self) {
            return position
        }
        return nil
    }

    // MARK: attachments

    public func createAttachment(ownerID: UUID, contentType: String, data: ByteBuffer, sha256: [UInt8]) async throws -> AttachmentRecord {
        let id = UUID.v7()
        for try await created in try await self.database.query(
            """
            INSERT INTO attachments (id, owner_id, content_type, size, sha256, data)
            VALUES (\(id), \(ownerID), \(contentType), \(data.readableBytes), \(ByteBuffer(bytes: sha256)), \(data))
            RETURNING created_at
            """,
            logger: self.logger
        ).decode(Date.self) {
            return AttachmentRecord(id: id, ownerID: ownerID, contentType: contentType, size: data.readableBytes, sha256: sha256, createdAt: created)
        }
        throw StoreError("insert returned no row")
    }

    /// The bytes of an attachment, for its uploader or a member of a chat
    /// where a (not deleted) message carries it; nil for anyone else.
    public func attachmentData(_ id: UUID, viewer: UUID) async throws -> (contentType: String, data: ByteBuffer)? {
        for try await (type, data) in try await self.database.query(
            """
            SELECT a.content_type, a.data FROM attachments a
            WHERE a.id = \(id) AND (
                a.owner_id = \(viewer) OR EXISTS (
                    SELECT 1 FROM message_attachments ma JOIN chat_members cm ON cm.chat_id = ma.chat_id AND cm.user_id = \(viewer)
                    WHERE ma.attachment_id = a.id
                )
            )
            """,
            logger: self.logger
        ).decode((String, ByteBuffer).self) {
            return (type, data)
        }
        return nil
    }
}

extension ChatStore {
    /// The chats a user belongs to, with each chat's last seq (read twice
    /// per WebSocket connect, and on every resync: a prepared statement).
    public func chatPositions(of userID: UUID) async throws -> [UUID: Int64] {
        try await self.positionReads.value(of: userID)
    }

    /// The chats of several users with each chat's last seq, in one statement.
    static func chatPositions(of users: [UUID], database: Database, logger: Logger) async throws -> [UUID: [UUID: Int64]] {
        var positions: [UUID: [UUID: Int64]] = [:]
        for (user, chat, seq) in try await database.execute(ChatPositionsStatement(userIDs: users), logger: logger) {
            positions[user, default: [:]][chat] = seq
        }
        return positions
    }

    public func chatIDs(of userID: UUID) async throws -> [UUID] {
        Array(try await self.chatPositions(of: userID).keys)
    }

    /// The messages of several seq ranges (`after` exclusive, `through`
    /// inclusive), in chat then seq order, in one query. Seqs are gapless, so
    /// a caller knows how many rows it asks for: keep the ranges small.
    public func messages(in ranges: [SeqRange]) async throws -> [MessageRecord] {
        let ranges = ranges.filter { $0.through > $0.after }
        guard !ranges.isEmpty else { return [] }
        let rows = try await self.database.query(
            """
            SELECT \(unescaped: Self.messageColumns)
            FROM unnest(\(ranges.map(\.chatID))::uuid[], \(ranges.map(\.after))::bigint[], \(ranges.map(\.through))::bigint[]) AS t(chat_id, after, through)
            JOIN messages m ON m.chat_id = t.chat_id AND m.seq > t.after AND m.seq <= t.through
            ORDER BY m.chat_id, m.seq
            """,
            logger: self.logger
        )
        var messages: [MessageRecord] = []
        for try await row in rows { messages.append(try Self.message(row)) }
        let attachments = try await self.attachments(of: messages.filter { !$0.isDeleted }.map { ($0.chatID, $0.seq) })
        for index in messages.indices {
            messages[index].attachments = attachments[Key(messages[index].chatID, messages[index].seq)] ?? []
        }
        return messages
    }
}

/// The chats of users with their last seqs (`ChatStore.chatPositions`),
/// prepared once per connection: a connect or a resync sends only Bind and
/// Execute, and PostgreSQL does not parse and plan the query again. Reads
/// are batched (`CoalescedReads`): one statement answers every user whose
/// connect asked while the previous one ran.
struct ChatPositionsStatement: PostgresPreparedStatement {
    static let sql = "SELECT m.user_id, c.id, c.last_seq FROM chat_members m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = ANY($1)"
    typealias Row = (UUID, UUID, Int64)

    let userIDs: [UUID]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 1)
        bindings.append(self.userIDs)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {
        try row.decode(Row.self)
    }
}
