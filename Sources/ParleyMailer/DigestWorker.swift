import Foundation
public import HiredisNIO
public import Logging
import Metrics
public import ParleyCore
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
    let store: MailStore
    let transport: any MailTransport
    let logger: Logger
    let sent = Counter(label: "parley_mails_sent_total", dimensions: [("kind", "digest")])
    /// Stream entries skipped because their envelope could not be read.
    let undecodable = Counter(label: "parley_events_undecodable_total")

    public init(configuration: MailerConfiguration, redis: RedisClient, store: MailStore, transport: any MailTransport, logger: Logger) {
        self.configuration = configuration
        self.redis = redis
        self.store = store
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
    static func newMessage(_ entry: RedisStreamEntry) throws(EventEnvelopeError) -> MailStore.NewMessageRef? {
        if let header = entry[EventStreams.envelopeField] {
            let envelope = try EventEnvelope.decode(header: header)
            guard envelope.kind == .message, let chat = envelope.chatID, let seq = envelope.seq, let sender = envelope.userID else { return nil }
            return MailStore.NewMessageRef(chatID: chat, seq: seq, senderID: sender)
        }
        guard entry["type"] == "message.created", let chat = entry["chat_id"].flatMap(UUID.init(uuidString:)),
            let seq = entry["seq"].flatMap(Int64.init), let sender = entry["sender_id"].flatMap(UUID.init(uuidString:))
        else { return nil }
        return MailStore.NewMessageRef(chatID: chat, seq: seq, senderID: sender)
    }

    /// Schedules the digests that new messages call for: every other member
    /// of the chat with notifications on, who has not read the message and
    /// has no open connection, gets a digest due after the delay (one per
    /// user: `ZADD NX` keeps an earlier due time).
    func schedule(_ entries: [RedisStreamEntry]) async throws {
        var messages: [MailStore.NewMessageRef] = []
        for entry in entries {
            do {
                if let message = try Self.newMessage(entry) { messages.append(message) }
            } catch {
                // acknowledged with the rest: a digest is a reminder, and a newer mailer reads it
                self.undecodable.increment()
                self.logger.warning("skipped a stream entry this mailer cannot read", metadata: ["entry.id": "\(entry.id)", "error": "\(error)"])
            }
        }
        let recipients = try await self.store.digestRecipients(of: messages)
        guard !recipients.isEmpty else { return }
        let online = Set(try await PresenceKeys.online(recipients, redis: self.redis))
        let offline = recipients.filter { !online.contains($0) }
        // a user with a digest already pending keeps its time; these messages join it
        try await self.dueSet.schedule(offline.map { $0.uuidString.lowercased() }, at: DueSet.now() + self.delayMilliseconds, keepEarlier: true)
    }

    // MARK: sending

    var dueSet: DueSet { DueSet(redis: self.redis, key: Self.due) }

    func sendDueDigests() async throws {
        while !Task.isCancelled {
            try await Task.sleep(for: .milliseconds(250))
            // lease: whoever moves the score forward owns this digest for a minute
            for user in await self.dueSet.takeDue(limit: 20, lease: .seconds(60)) {
                guard let userID = UUID(uuidString: user) else { continue }
                do {
                    try await self.sendDigest(to: userID)
                    try await self.dueSet.finish(user)
                } catch {
                    self.logger.warning("digest failed; retrying later", metadata: ["error": "\(error)"])
                    try? await self.dueSet.schedule([user], at: DueSet.now() + 30_000, keepEarlier: false)
                }
            }
        }
    }

    func sendDigest(to userID: UUID) async throws {
        guard let recipient = try await self.store.digestAddress(of: userID) else { return }
        let chats = try await self.store.unreadChats(of: userID)
        guard !chats.isEmpty else {
            self.logger.info("digest skipped: everything was read", metadata: ["user.id": "\(userID.uuidString.lowercased())"])
            return
        }
        let key = "digest:\(userID.uuidString.lowercased()):" + chats.map { "\($0.chatID.uuidString.lowercased())@\($0.throughSeq)" }.sorted().joined(separator: ",")
        // record first: a crash after this never mails the same range twice
        guard try await self.store.recordDigest(key, to: userID, chats: chats) else { return }
        do {
            try await self.transport.send(Self.digestMail(chats, to: .init(email: recipient.email, name: recipient.name), from: self.configuration.from, messageID: "\(UUID.v7().lowercased)@parley"))
            self.sent.increment()
            NotificationMetrics.count("digest", "sent")
            self.logger.info("digest sent", metadata: ["user.id": "\(userID.uuidString.lowercased())", "digest.chats": "\(chats.count)"])
        } catch {
            // not sent: forget the record so that the next attempt mails it
            try await self.store.forgetDigest(key, to: userID, chats: chats)
            throw error
        }
    }

    static func digestMail(_ chats: [MailStore.DigestChat], to: MailMessage.Address, from: MailMessage.Address, messageID: String) -> MailMessage {
        let total = chats.reduce(0) { $0 + $1.unread }
        var text = "You have \(total) unread message\(total == 1 ? "" : "s") on Parley.\n"
        var html = "<p>You have \(total) unread message\(total == 1 ? "" : "s") on Parley.</p>"
        for chat in chats {
            text += "\n\(chat.title) (\(chat.unread) unread)\n"
            html += "<h3>\(HTML.escape(chat.title)) (\(chat.unread) unread)</h3><ul>"
            for message in chat.messages {
                text += "  \(message.sender): \(message.body)\n"
                html += "<li><strong>\(HTML.escape(message.sender))</strong>: \(HTML.escape(message.body))</li>"
            }
            html += "</ul>"
        }
        text += "\nTurn these mails off in your profile (email_notifications).\n"
        return MailMessage(from: from, to: to, subject: "You have \(total) unread message\(total == 1 ? "" : "s")", text: text, html: html, messageID: messageID)
    }
}
