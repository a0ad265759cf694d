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

    public init(chatID: UUID, senderID: UUID, clientID: UUID, body: String?, attachmentIDs: [UUID] = [], replyToSeq: Int64? = nil) {
        self.chatID = chatID
        self.senderID = senderID
        self.clientID = clientID
        self.body = body
        self.attachmentIDs = attachmentIDs
        self.replyToSeq = replyToSeq
    }
}

extension ChatStore {
    /// Stores a message with the chat's next seq, or returns the message this
    /// sender already sent with the same client id (`created` false).
    public func send(_ new: NewMessage) async throws -> (message: MessageRecord, created: Bool) {
        try await self.client.transaction(logger: self.logger) { connection in
            // Membership check and the per-chat lock that orders seqs, in one statement.
            var lastSeq: Int64?
            for try await seq in try await connection.query(
                """
                SELECT c.last_seq FROM chats c
                JOIN chat_members m ON m.chat_id = c.id AND m.user_id = \(new.senderID)
                WHERE c.id = \(new.chatID) FOR UPDATE OF c
                """,
                logger: self.logger
            ).decode(Int64.self) {
                lastSeq = seq
            }
            guard let lastSeq else { throw ChatError.chatNotFound }
            if let existing = try await Self.message(on: connection, chatID: new.chatID, senderID: new.senderID, clientID: new.clientID, logger: self.logger) {
                return (existing, false)
            }
            if let reply = new.replyToSeq {
                var found = false
                for try await _ in try await connection.query("SELECT 1 FROM messages WHERE chat_id = \(new.chatID) AND seq = \(reply)", logger: self.logger) {
                    found = true
                }
                guard found else { throw ChatError.invalidReply }
            }
            var attachments: [AttachmentRef] = []
            if !new.attachmentIDs.isEmpty {
                var byID: [UUID: AttachmentRef] = [:]
                for try await (id, type, size) in try await connection.query(
                    "SELECT id, content_type, size FROM attachments WHERE id = ANY(\(new.attachmentIDs)) AND owner_id = \(new.senderID)",
                    logger: self.logger
                ).decode((UUID, String, Int).self) {
                    byID[id] = AttachmentRef(id: id, contentType: type, size: size)
                }
                guard byID.count == Set(new.attachmentIDs).count, byID.count == new.attachmentIDs.count else { throw ChatError.invalidAttachments }
                attachments = new.attachmentIDs.compactMap { byID[$0] }
            }
            let seq = lastSeq + 1
            let rows = try await connection.query(
                """
                WITH bump AS (
                    UPDATE chats SET last_seq = \(seq), activity_at = now() WHERE id = \(new.chatID)
                ), reader AS (
                    UPDATE chat_members SET last_read_seq = GREATEST(last_read_seq, \(seq))
                    WHERE chat_id = \(new.chatID) AND user_id = \(new.senderID)
                )
                INSERT INTO messages AS m (chat_id, seq, id, sender_id, client_id, body, reply_to_seq)
                VALUES (\(new.chatID), \(seq), \(UUID.v7()), \(new.senderID), \(new.clientID), \(new.body), \(new.replyToSeq))
                RETURNING \(unescaped: Self.messageColumns)
                """,
                logger: self.logger
            )
            var stored: MessageRecord?
            for try await row in rows { stored = try Self.message(row) }
            guard var message = stored else { throw StoreError("insert returned no row") }
            if !attachments.isEmpty {
                try await connection.query(
                    """
                    INSERT INTO message_attachments (chat_id, seq, attachment_id, position)
                    SELECT \(new.chatID), \(seq), a, p - 1 FROM unnest(\(attachments.map(\.id))::uuid[]) WITH ORDINALITY AS t(a, p)
                    """,
                    logger: self.logger
                )
                message.attachments = attachments
            }
            return (message, true)
        }
    }

    static func message(on connection: PostgresConnection, chatID: UUID, senderID: UUID, clientID: UUID, logger: Logger) async throws -> MessageRecord? {
        var found: MessageRecord?
        for try await row in try await connection.query(
            "SELECT \(unescaped: Self.messageColumns) FROM messages m WHERE m.chat_id = \(chatID) AND m.sender_id = \(senderID) AND m.client_id = \(clientID)",
            logger: logger
        ) {
            found = try Self.message(row)
        }
        guard var message = found else { return nil }
        message.attachments = try await Self.attachments(on: connection, chatID: chatID, seq: message.seq, logger: logger)
        return message
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
    public func history(chatID: UUID, viewer: UUID, before: Int64?, after: Int64?, limit: Int) async throws -> (messages: [MessageRecord], hasMore: Bool) {
        guard try await self.role(of: viewer, in: chatID) != nil else { throw ChatError.chatNotFound }
        return try await self.messages(chatID: chatID, before: before, after: after, limit: limit)
    }

    /// History without a membership check, for callers that did it (the realtime resume).
    public func messages(chatID: UUID, before: Int64?, after: Int64?, limit: Int) async throws -> (messages: [MessageRecord], hasMore: Bool) {
        let upper = before ?? Int64.max
        let query: PostgresQuery
        if let after {
            query = """
                SELECT \(unescaped: Self.messageColumns) FROM messages m
                WHERE m.chat_id = \(chatID) AND m.seq > \(after) AND m.seq < \(upper)
                ORDER BY m.seq ASC LIMIT \(limit + 1)
                """
        } else {
            query = """
                SELECT \(unescaped: Self.messageColumns) FROM messages m
                WHERE m.chat_id = \(chatID) AND m.seq < \(upper)
                ORDER BY m.seq DESC LIMIT \(limit + 1)
                """
        }
        var messages: [MessageRecord] = []
        for try await row in try await self.client.query(query, logger: self.logger) { messages.append(try Self.message(row)) }
        let hasMore = messages.count > limit
        messages = Array(messages.prefix(limit))
        if after == nil { messages.reverse() }
        let attachments = try await self.attachments(of: messages.filter { !$0.isDeleted }.map { ($0.chatID, $0.seq) })
        for index in messages.indices {
            messages[index].attachments = attachments[Key(chatID, messages[index].seq)] ?? []
        }
        return (messages, hasMore)
    }

    /// Edits the body (sender only, not once deleted).
    public func edit(chatID: UUID, seq: Int64, actor: UUID, body: String) async throws -> MessageRecord {
        try await self.client.transaction(logger: self.logger) { connection in
            let message = try await self.lockedMessage(connection, chatID: chatID, seq: seq, actor: actor).message
            guard message.senderID == actor else { throw ChatError.notAllowed("only the sender can edit a message") }
            guard !message.isDeleted else { throw ChatError.messageDeleted }
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
        try await self.client.transaction(logger: self.logger) { connection in
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
            guard let tombstone else { throw ChatError.messageNotFound }
            return (tombstone, true)
        }
    }

    private func lockedMessage(_ connection: PostgresConnection, chatID: UUID, seq: Int64, actor: UUID) async throws -> (message: MessageRecord, role: MemberRole) {
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
        message.attachments = try await Self.attachments(on: connection, chatID: chatID, seq: seq, logger: self.logger)
        return (message, role)
    }

    /// Moves the reader's position forward only, never past the chat's last
    /// seq. Returns the new position, or nil when it did not move.
    public func markRead(chatID: UUID, userID: UUID, seq: Int64) async throws -> Int64? {
        guard try await self.role(of: userID, in: chatID) != nil else { throw ChatError.chatNotFound }
        for try await position in try await self.client.query(
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
        for try await created in try await self.client.query(
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
        for try await (type, data) in try await self.client.query(
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
    /// The chats a user belongs to, with each chat's last seq.
    public func chatPositions(of userID: UUID) async throws -> [UUID: Int64] {
        var positions: [UUID: Int64] = [:]
        for try await (id, seq) in try await self.client.query(
            "SELECT c.id, c.last_seq FROM chat_members m JOIN chats c ON c.id = m.chat_id WHERE m.user_id = \(userID)", logger: self.logger
        ).decode((UUID, Int64).self) {
            positions[id] = seq
        }
        return positions
    }

    public func chatIDs(of userID: UUID) async throws -> [UUID] {
        Array(try await self.chatPositions(of: userID).keys)
    }

    /// For each chat, the messages after the given seq (at most `limit` + 1
    /// per chat, so callers can tell "more than limit"), in seq order. One query.
    public func messages(after positions: [UUID: Int64], limit: Int) async throws -> [UUID: [MessageRecord]] {
        guard !positions.isEmpty else { return [:] }
        let chats = Array(positions.keys)
        let rows = try await self.client.query(
            """
            SELECT \(unescaped: Self.messageColumns) FROM (
                SELECT m.*, row_number() OVER (PARTITION BY m.chat_id ORDER BY m.seq) AS rn
                FROM messages m JOIN unnest(\(chats)::uuid[], \(chats.map { positions[$0] ?? 0 })::bigint[]) AS t(chat_id, after)
                  ON m.chat_id = t.chat_id AND m.seq > t.after
            ) m WHERE m.rn <= \(limit + 1) ORDER BY m.chat_id, m.seq
            """,
            logger: self.logger
        )
        var result: [UUID: [MessageRecord]] = [:]
        var all: [MessageRecord] = []
        for try await row in rows { all.append(try Self.message(row)) }
        let attachments = try await self.attachments(of: all.filter { !$0.isDeleted }.map { ($0.chatID, $0.seq) })
        for var message in all {
            message.attachments = attachments[Key(message.chatID, message.seq)] ?? []
            result[message.chatID, default: []].append(message)
        }
        return result
    }
}
