public import Foundation
public import Logging
import PostgresNIO

/// What the mail worker reads and records in PostgreSQL: who gets a digest,
/// what is still unread, and which mails were sent (`mail_sent`,
/// `mail_digests`), so that a mail is never sent twice.
public struct MailStore: Sendable {
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    // MARK: sent mails

    public func alreadySent(_ key: String) async throws -> Bool {
        try await self.database.query("SELECT 1 FROM mail_sent WHERE idempotency_key = \(key)", logger: self.logger).elements.isEmpty == false
    }

    public func recordSent(_ key: String, kind: String) async throws {
        try await self.database.query(
            "INSERT INTO mail_sent (idempotency_key, kind) VALUES (\(key), \(kind)) ON CONFLICT DO NOTHING", logger: self.logger
        )
    }

    // MARK: digests

    /// A new message, as the digest scheduler reads it off the stream.
    public struct NewMessageRef: Sendable, Hashable {
        public var chatID: UUID
        public var seq: Int64
        public var senderID: UUID

        public init(chatID: UUID, seq: Int64, senderID: UUID) {
            self.chatID = chatID
            self.seq = seq
            self.senderID = senderID
        }
    }

    /// Every member, other than the sender, who has not read one of
    /// `messages`, whom it notifies (their chat settings: `parley_notifies`)
    /// and who wants mail at a verified address: once each. Each chat's
    /// members are read once however many of its messages the read holds
    /// (a materialized step fixes that order, whatever the statistics say).
    public func digestRecipients(of messages: [NewMessageRef]) async throws -> [UUID] {
        guard !messages.isEmpty else { return [] }
        let chats = messages.map(\.chatID), seqs = messages.map(\.seq), senders = messages.map(\.senderID)
        return try await self.database.query(
            """
            WITH e AS MATERIALIZED (
                SELECT e.chat_id, e.seq, e.sender_id, msg.mentions
                FROM unnest(\(chats)::uuid[], \(seqs)::bigint[], \(senders)::uuid[]) AS e(chat_id, seq, sender_id)
                JOIN messages msg ON msg.chat_id = e.chat_id AND msg.seq = e.seq
            )
            SELECT DISTINCT u.id FROM chat_members m
            JOIN users u ON u.id = m.user_id AND u.email_notifications AND u.email_verified AND u.deleted_at IS NULL
            WHERE m.chat_id IN (SELECT chat_id FROM e) AND EXISTS (
                SELECT 1 FROM e WHERE e.chat_id = m.chat_id AND e.sender_id <> m.user_id AND e.seq > m.last_read_seq
                AND parley_notifies(m.notify, m.muted_until, m.user_id = ANY(e.mentions))
            )
            """,
            logger: self.logger
        ).decode(UUID.self).elements
    }

    /// Where a digest goes: nil unless the user still wants mail at a verified
    /// address (an unverified one may be someone else's).
    public func digestAddress(of userID: UUID) async throws -> (email: String, name: String)? {
        let rows = try await self.database.query(
            "SELECT email, display_name, email_notifications AND email_verified AND deleted_at IS NULL FROM users WHERE id = \(userID)",
            logger: self.logger
        ).decode((String, String, Bool).self).elements
        guard let (email, name, wanted) = rows.first, wanted else { return nil }
        return (email, name)
    }

    /// One chat of a digest: what is unread and not in an earlier digest.
    public struct DigestChat: Sendable {
        public var chatID: UUID
        /// The group's title or, for a direct chat, the other member's name.
        public var title: String
        public var unread: Int64
        /// The last seq an earlier digest covered, if any.
        public var previouslyMailed: Int64?
        /// The last seq this digest covers.
        public var throughSeq: Int64
        /// Up to 5 newest messages from others after `previouslyMailed`, oldest first.
        public var messages: [(sender: String, body: String)]

        public init(chatID: UUID, title: String, unread: Int64, previouslyMailed: Int64?, throughSeq: Int64, messages: [(sender: String, body: String)]) {
            self.chatID = chatID
            self.title = title
            self.unread = unread
            self.previouslyMailed = previouslyMailed
            self.throughSeq = throughSeq
            self.messages = messages
        }
    }

    /// The user's chats (up to 20, most active first) with messages neither
    /// read nor mailed before, each with its newest such messages that
    /// notify the user (their chat settings: `parley_notifies`); chats with
    /// no such message are left out.
    public func unreadChats(of userID: UUID) async throws -> [DigestChat] {
        var chats: [DigestChat] = []
        for (chatID, kind, title, lastSeq, lastRead, mailed, peerName) in try await self.database.query(
            """
            SELECT c.id, c.kind, c.title, c.last_seq, m.last_read_seq, d.through_seq,
                   (SELECT u.display_name FROM chat_members pm JOIN users u ON u.id = pm.user_id
                    WHERE c.kind = 'direct' AND pm.chat_id = c.id AND pm.user_id <> \(userID) LIMIT 1)
            FROM chat_members m JOIN chats c ON c.id = m.chat_id
            LEFT JOIN mail_digests d ON d.user_id = m.user_id AND d.chat_id = c.id
            WHERE m.user_id = \(userID) AND m.notify <> 'none' AND c.last_seq > GREATEST(m.last_read_seq, COALESCE(d.through_seq, 0))
            ORDER BY c.activity_at DESC LIMIT 20
            """,
            logger: self.logger
        ).decode((UUID, String, String?, Int64, Int64, Int64?, String?).self).elements {
            let name = kind == "direct" ? (peerName ?? "Direct chat") : (title ?? "Group")
            chats.append(DigestChat(chatID: chatID, title: name, unread: lastSeq - lastRead, previouslyMailed: mailed, throughSeq: lastSeq, messages: []))
        }
        for index in chats.indices {
            let chat = chats[index]
            let newest = try await self.database.query(
                """
                SELECT u.display_name, msg.body FROM messages msg JOIN users u ON u.id = msg.sender_id
                JOIN chat_members me ON me.chat_id = msg.chat_id AND me.user_id = \(userID)
                WHERE msg.chat_id = \(chat.chatID) AND msg.seq > \(chat.previouslyMailed ?? 0) AND msg.seq <= \(chat.throughSeq)
                  AND msg.deleted_at IS NULL AND msg.sender_id <> \(userID)
                  AND parley_notifies(me.notify, me.muted_until, \(userID) = ANY(msg.mentions))
                ORDER BY msg.seq DESC LIMIT 5
                """,
                logger: self.logger
            ).decode((String, String?).self).elements
            chats[index].messages = newest.reversed().map { (sender: $0.0, body: $0.1 ?? "(attachment)") }
        }
        return chats.filter { !$0.messages.isEmpty }
    }

    /// Records a digest under `key` before it is mailed: false if a digest
    /// with this key was recorded already (it must not go out twice).
    public func recordDigest(_ key: String, to userID: UUID, chats: [DigestChat]) async throws -> Bool {
        try await self.database.transaction(logger: self.logger) { [logger] connection in
            var inserted = false
            for try await _ in try await connection.query(
                "INSERT INTO mail_sent (idempotency_key, kind, user_id) VALUES (\(key), 'digest', \(userID)) ON CONFLICT DO NOTHING RETURNING 1",
                logger: logger
            ) {
                inserted = true
            }
            guard inserted else { return false }
            for chat in chats {
                try await connection.query(
                    """
                    INSERT INTO mail_digests (user_id, chat_id, through_seq) VALUES (\(userID), \(chat.chatID), \(chat.throughSeq))
                    ON CONFLICT (user_id, chat_id) DO UPDATE SET through_seq = GREATEST(mail_digests.through_seq, EXCLUDED.through_seq), sent_at = now()
                    """,
                    logger: logger
                )
            }
            return true
        }
    }

    /// Undoes `recordDigest` for a digest that could not be mailed, so that
    /// the next attempt mails the same range.
    public func forgetDigest(_ key: String, to userID: UUID, chats: [DigestChat]) async throws {
        try await self.database.transaction(logger: self.logger) { [logger] connection in
            try await connection.query("DELETE FROM mail_sent WHERE idempotency_key = \(key)", logger: logger)
            for chat in chats {
                if let previous = chat.previouslyMailed {
                    try await connection.query(
                        "UPDATE mail_digests SET through_seq = \(previous) WHERE user_id = \(userID) AND chat_id = \(chat.chatID)", logger: logger
                    )
                } else {
                    try await connection.query("DELETE FROM mail_digests WHERE user_id = \(userID) AND chat_id = \(chat.chatID)", logger: logger)
                }
            }
        }
    }
}
