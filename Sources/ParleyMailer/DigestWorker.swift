import Foundation
public import HiredisNIO
public import Logging
import Metrics
import ParleyCore
public import PostgresNIO
public import ServiceLifecycle
import ParleyChat

/// Unread digests: "you have unread messages" for users who are offline.
///
/// 1. Consumes `events:messages` (group `digests`): for each new message,
///    every other member with email notifications on and a verified address, the message unread and
///    no open connection anywhere gets a digest due after `delay` — one per
///    user (`ZADD NX` on `digests:due`): later messages join it.
/// 2. When a digest is due, one worker leases it, re-reads PostgreSQL and
///    mails only what is still unread and was not in an earlier digest
///    (chats, senders, up to 5 newest messages per chat, counts). Nothing
///    unread: no mail. The range is recorded in PostgreSQL (`mail_digests`,
///    `mail_sent`) before the mail goes out, so it is never mailed twice —
///    a crash mid-send loses one digest rather than doubling it.
public final class DigestWorker: Service {
    public static let stream = EventStreams.messages
    public static let group = "digests"
    public static let due = "digests:due"

    let configuration: MailerConfiguration
    let redis: RedisClient
    let postgres: PostgresClient
    let transport: any MailTransport
    let logger: Logger
    let sent = Counter(label: "parley_mails_sent_total", dimensions: [("kind", "digest")])
    /// Stream entries skipped because their envelope could not be read.
    let undecodable = Counter(label: "parley_events_undecodable_total")

    public init(configuration: MailerConfiguration, redis: RedisClient, postgres: PostgresClient, transport: any MailTransport, logger: Logger) {
        self.configuration = configuration
        self.redis = redis
        self.postgres = postgres
        self.transport = transport
        self.logger = logger
    }

    var delayMilliseconds: Int64 { self.configuration.digestDelay.milliseconds }

    public func run() async throws {
        try await self.redis.xgroupCreate(Self.stream, group: Self.group, startID: "$")
        try await untilGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.consumeEvents() }
                group.addTask { try await self.sendDueDigests() }
                try await group.waitForAll()
            }
        }
    }

    // MARK: scheduling

    /// Events come in reads of up to 500; once caught up, they gather for
    /// 250 ms between reads (digests are due minutes later), so each round
    /// is one PostgreSQL query and two Redis round trips for hundreds of
    /// messages. A round that fails leaves its events pending: they are
    /// claimed and scheduled again after `retryAfter`.
    func consumeEvents() async throws {
        let consumer = StreamGroupConsumer(
            redis: self.redis, stream: Self.stream, group: Self.group, consumer: self.configuration.consumer, count: 500,
            claimIdle: self.configuration.retryAfter, gather: .milliseconds(250), logger: self.logger
        )
        try await consumer.run { entries, _ in
            do {
                try await self.schedule(entries)
                try await self.redis.xack(Self.stream, group: Self.group, ids: entries.map(\.id))
            } catch {
                self.logger.warning("could not schedule digests; the events stay pending and are tried again", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The chat, seq and sender of a stream entry about a new message: an
    /// `EventEnvelope` header in the field `e`, or (entries a gateway of
    /// the previous version appended) the fields `type`, `chat_id`, `seq`
    /// and `sender_id`. Anything else: nil.
    /// A header that cannot be read throws (a newer gateway during an
    /// upgrade): the caller counts it.
    static func newMessage(_ entry: RedisStreamEntry) throws(EventEnvelopeError) -> (chat: UUID, seq: Int64, sender: UUID)? {
        if let header = entry[EventStreams.envelopeField] {
            let envelope = try EventEnvelope.decode(header: header)
            guard envelope.kind == .message, let chat = envelope.chatID, let seq = envelope.seq, let sender = envelope.userID else { return nil }
            return (chat, seq, sender)
        }
        guard entry["type"] == "message.created", let chat = entry["chat_id"].flatMap(UUID.init(uuidString:)),
            let seq = entry["seq"].flatMap(Int64.init), let sender = entry["sender_id"].flatMap(UUID.init(uuidString:))
        else { return nil }
        return (chat, seq, sender)
    }

    /// Schedules the digests that new messages call for: every other member
    /// of the chat with notifications on, who has not read the message and
    /// has no open connection, gets a digest due after the delay (one per
    /// user: `ZADD NX` keeps an earlier due time).
    func schedule(_ entries: [RedisStreamEntry]) async throws {
        var chats: [UUID] = [], seqs: [Int64] = [], senders: [UUID] = []
        for entry in entries {
            let found: (chat: UUID, seq: Int64, sender: UUID)?
            do {
                found = try Self.newMessage(entry)
            } catch {
                // acknowledged with the rest: a digest is a reminder, and a newer mailer reads it
                self.undecodable.increment()
                self.logger.warning("skipped a stream entry this mailer cannot read", metadata: ["entry.id": "\(entry.id)", "error": "\(error)"])
                continue
            }
            guard let (chatID, seq, senderID) = found else { continue }
            chats.append(chatID)
            seqs.append(seq)
            senders.append(senderID)
        }
        guard !chats.isEmpty else { return }
        var recipients: [UUID] = []
        for try await id in try await self.postgres.query(
            """
            SELECT DISTINCT u.id FROM unnest(\(chats)::uuid[], \(seqs)::bigint[], \(senders)::uuid[]) AS e(chat_id, seq, sender_id)
            JOIN chat_members m ON m.chat_id = e.chat_id AND m.user_id <> e.sender_id AND m.last_read_seq < e.seq
            JOIN users u ON u.id = m.user_id AND u.email_notifications AND u.email_verified AND u.deleted_at IS NULL
            """,
            logger: self.logger
        ).decode(UUID.self) {
            recipients.append(id)
        }
        guard !recipients.isEmpty else { return }
        let online = Set(try await PresenceKeys.online(recipients, redis: self.redis))
        let dueAt = Int64(Date().timeIntervalSince1970 * 1000) + self.delayMilliseconds
        let offline = recipients.filter { !online.contains($0) }
        guard !offline.isEmpty else { return }
        // NX: a user with a digest already pending keeps its time; these messages join it
        _ = try await self.redis.send(RedisCommand("ZADD", [.string(Self.due), "NX"] + offline.flatMap { [RedisArgument(dueAt), .string($0.uuidString.lowercased())] }))
    }

    // MARK: sending

    func sendDueDigests() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .milliseconds(250))
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            guard let due = try? await self.redis.zrangeByScore(Self.due, min: "-inf", max: String(now), limit: 20) else { continue }
            for user in due {
                // lease: whoever moves the score forward owns this digest for a minute
                let leased = try? await self.redis.evalsha(Self.leaseScript, keys: [Self.due], arguments: [.string(user), RedisArgument(now), RedisArgument(60_000)])
                guard leased?.int == 1, let userID = UUID(uuidString: user) else { continue }
                do {
                    try await self.sendDigest(to: userID)
                    _ = try await self.redis.zrem(Self.due, [user])
                } catch {
                    self.logger.warning("digest failed; retrying later", metadata: ["error": "\(error)"])
                    _ = try? await self.redis.zadd(Self.due, [(score: Double(now + 30_000), member: user)])
                }
            }
        }
    }

    /// Takes a due digest if it is still due (another worker may have leased it).
    static let leaseScript = RedisScript(
        """
        local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if score and tonumber(score) <= tonumber(ARGV[2]) then
          redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
          return 1
        end
        return 0
        """
    )

    struct ChatDigest {
        var chatID: UUID
        var title: String
        var unread: Int64
        var previouslyMailed: Int64?
        var throughSeq: Int64
        var messages: [(sender: String, body: String)]
    }

    func sendDigest(to userID: UUID) async throws {
        var recipient: (email: String, name: String, notify: Bool)?
        for try await row in try await self.postgres.query(
            // only to an address its owner proved (an unverified one may be someone else's)
            "SELECT email, display_name, email_notifications AND email_verified AND deleted_at IS NULL FROM users WHERE id = \(userID)", logger: self.logger
        ).decode((String, String, Bool).self) {
            recipient = row
        }
        guard let recipient, recipient.notify else { return }
        var chats: [ChatDigest] = []
        for try await (chatID, kind, title, lastSeq, lastRead, mailed, peerName) in try await self.postgres.query(
            """
            SELECT c.id, c.kind, c.title, c.last_seq, m.last_read_seq, d.through_seq,
                   (SELECT u.display_name FROM chat_members pm JOIN users u ON u.id = pm.user_id
                    WHERE c.kind = 'direct' AND pm.chat_id = c.id AND pm.user_id <> \(userID) LIMIT 1)
            FROM chat_members m JOIN chats c ON c.id = m.chat_id
            LEFT JOIN mail_digests d ON d.user_id = m.user_id AND d.chat_id = c.id
            WHERE m.user_id = \(userID) AND c.last_seq > GREATEST(m.last_read_seq, COALESCE(d.through_seq, 0))
            ORDER BY c.activity_at DESC LIMIT 20
            """,
            logger: self.logger
        ).decode((UUID, String, String?, Int64, Int64, Int64?, String?).self) {
            let name = kind == "direct" ? (peerName ?? "Direct chat") : (title ?? "Group")
            chats.append(ChatDigest(chatID: chatID, title: name, unread: lastSeq - lastRead, previouslyMailed: mailed, throughSeq: lastSeq, messages: []))
        }
        for index in chats.indices {
            let after = chats[index].previouslyMailed ?? 0
            var newest: [(String, String)] = []
            for try await (sender, body) in try await self.postgres.query(
                """
                SELECT u.display_name, msg.body FROM messages msg JOIN users u ON u.id = msg.sender_id
                WHERE msg.chat_id = \(chats[index].chatID) AND msg.seq > \(after) AND msg.seq <= \(chats[index].throughSeq)
                  AND msg.deleted_at IS NULL AND msg.sender_id <> \(userID)
                ORDER BY msg.seq DESC LIMIT 5
                """,
                logger: self.logger
            ).decode((String, String?).self) {
                newest.append((sender, body ?? "(attachment)"))
            }
            chats[index].messages = newest.reversed()
        }
        chats.removeAll { $0.messages.isEmpty }
        guard !chats.isEmpty else {
            self.logger.info("digest skipped: everything was read", metadata: ["user.id": "\(userID.uuidString.lowercased())"])
            return
        }
        let key = "digest:\(userID.uuidString.lowercased()):" + chats.map { "\($0.chatID.uuidString.lowercased())@\($0.throughSeq)" }.sorted().joined(separator: ",")
        // record first: a crash after this never mails the same range twice
        let fresh: Bool = try await self.postgres.transaction(logger: self.logger) { connection in
            var inserted = false
            for try await _ in try await connection.query(
                "INSERT INTO mail_sent (idempotency_key, kind, user_id) VALUES (\(key), 'digest', \(userID)) ON CONFLICT DO NOTHING RETURNING 1",
                logger: self.logger
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
                    logger: self.logger
                )
            }
            return true
        }
        guard fresh else { return }
        do {
            try await self.transport.send(Self.digestMail(chats, to: .init(email: recipient.email, name: recipient.name), from: self.configuration.from, messageID: "\(UUID.v7().lowercased)@parley"))
            self.sent.increment()
            self.logger.info("digest sent", metadata: ["user.id": "\(userID.uuidString.lowercased())", "digest.chats": "\(chats.count)"])
        } catch {
            // not sent: forget the record so that the next attempt mails it
            try await self.postgres.transaction(logger: self.logger) { connection in
                try await connection.query("DELETE FROM mail_sent WHERE idempotency_key = \(key)", logger: self.logger)
                for chat in chats {
                    if let previous = chat.previouslyMailed {
                        try await connection.query("UPDATE mail_digests SET through_seq = \(previous) WHERE user_id = \(userID) AND chat_id = \(chat.chatID)", logger: self.logger)
                    } else {
                        try await connection.query("DELETE FROM mail_digests WHERE user_id = \(userID) AND chat_id = \(chat.chatID)", logger: self.logger)
                    }
                }
            }
            throw error
        }
    }

    static func digestMail(_ chats: [ChatDigest], to: MailMessage.Address, from: MailMessage.Address, messageID: String) -> MailMessage {
        let total = chats.reduce(0) { $0 + $1.unread }
        var text = "You have \(total) unread message\(total == 1 ? "" : "s") on Parley.\n"
        var html = "<p>You have \(total) unread message\(total == 1 ? "" : "s") on Parley.</p>"
        for chat in chats {
            text += "\n\(chat.title) (\(chat.unread) unread)\n"
            html += "<h3>\(escape(chat.title)) (\(chat.unread) unread)</h3><ul>"
            for message in chat.messages {
                text += "  \(message.sender): \(message.body)\n"
                html += "<li><strong>\(escape(message.sender))</strong>: \(escape(message.body))</li>"
            }
            html += "</ul>"
        }
        text += "\nTurn these mails off in your profile (email_notifications).\n"
        return MailMessage(from: from, to: to, subject: "You have \(total) unread message\(total == 1 ? "" : "s")", text: text, html: html, messageID: messageID)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
