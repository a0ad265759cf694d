import Foundation
public import HiredisNIO
public import Logging
import Metrics
public import ParleyCore
public import ServiceLifecycle
import ParleyChat

/// Webhooks (PROTOCOL.md 1.1): every `message.created`, `message.updated`,
/// `member.added`, `member.removed` and `user.registered` POSTed to each of
/// `PARLEY_WEBHOOK_URLS`, signed the Standard Webhooks way.
///
/// 1. Consumes `events:messages` (group `webhooks`) like the other workers
///    (claims from dead workers): each event becomes one body,
///    `{"type", "timestamp", "data"}`, with the id `evt_<stream entry id>`:
///    the same id however often it is delivered, so receivers dedupe by
///    `webhook-id`. Messages are read from PostgreSQL (one query per read
///    of up to 200 events): the Message as `GET …/messages` shows it then.
/// 2. Each (body, URL) becomes a job in the sorted set `webhooks:jobs`, due
///    at once, and the stream entries are acknowledged: a slow receiver
///    never holds the stream. `DueJobRunner` sends due jobs 32 at a time
///    (10 s each), leased while they run, so any notifier may take them. A
///    failure (not 2xx, a timeout, no connection) is tried again after 5 s,
///    10 s, 20 s… up to an hour (with jitter); after `retryWindow` (24 h)
///    the delivery moves to the stream `webhooks:dead` with its last error,
///    and `parley notifier --replay-dead` puts it back.
///
/// Nothing here is on the send path: gateways only append to the stream.
public final class WebhookWorker: Service {
    public static let group = "webhooks"
    public static let jobsKey = "webhooks:jobs"
    public static let deadLetters = "webhooks:dead"

    let redis: RedisClient
    let chats: ChatStore
    let accounts: AccountStore
    let sender: WebhookSender
    let urls: [URL]
    let queue: EventJobWorker
    let retries: RetrySchedule
    let logger: Logger

    public init(
        redis: RedisClient, chats: ChatStore, accounts: AccountStore, sender: WebhookSender, settings: WebhookSettings, consumer: String,
        claimIdle: Duration, logger: Logger
    ) {
        self.redis = redis
        self.chats = chats
        self.accounts = accounts
        self.sender = sender
        self.urls = settings.urls
        self.queue = EventJobWorker(redis: redis, group: Self.group, jobsKey: Self.jobsKey, consumer: consumer, claimIdle: claimIdle, logger: logger)
        self.retries = RetrySchedule(first: .seconds(5), cap: .seconds(3600), window: settings.retryWindow)
        self.logger = logger
    }

    public func run() async throws {
        try await self.queue.run(
            jobs: { entries in
                let events = try await self.events(of: entries)
                return try events.flatMap { event in try self.urls.map { try WebhookJob(url: $0, event: event).encoded() } }
            },
            attempt: { member in
                guard let job = WebhookJob(encoded: member) else { return true }
                return await self.attempt(job)
            },
            cleanup: self.sender.shutdown
        )
    }

    // MARK: events

    /// One webhook, ready to sign: the body is fixed once, so every retry sends the same bytes.
    struct Event: Sendable, Equatable {
        var id: String
        var body: String
    }

    /// What `type`, `data` and an event's time make: `{"type", "timestamp", "data"}`.
    static func body<Payload: Encodable>(type: String, timestamp: Date, data: Payload) throws -> String {
        String(decoding: try JSONEncoder.parley.encode(WebhookBody(type: type, timestamp: Timestamp.format(timestamp), data: data)), as: UTF8.self)
    }

    struct Membership: Encodable {
        let chatID: String
        let userID: String
        enum CodingKeys: String, CodingKey {
            case chatID = "chat_id"
            case userID = "user_id"
        }
    }

    /// A new account as anyone may see it (no address).
    struct NewUser: Encodable {
        let id: String
        let displayName: String?
        let createdAt: String?
        enum CodingKeys: String, CodingKey {
            case id
            case displayName = "display_name"
            case createdAt = "created_at"
        }
    }

    /// The webhooks of stream entries, in order; entries that are not one of
    /// the five types (read positions) make none.
    func events(of entries: [RedisStreamEntry]) async throws -> [Event] {
        var parsed: [(entry: RedisStreamEntry, envelope: EventEnvelope)] = []
        for entry in entries {
            guard let header = entry[EventStreams.envelopeField], let envelope = try? EventEnvelope.decode(header: header) else { continue }
            parsed.append((entry, envelope))
        }
        // the messages, in one query
        let ranges = Set(parsed.compactMap { item -> SeqRange? in
            guard [.message, .messageUpdated].contains(item.envelope.kind), let chat = item.envelope.chatID, let seq = item.envelope.seq, seq > 0 else { return nil }
            return SeqRange(chatID: chat, after: seq - 1, through: seq)
        })
        var messages: [String: MessageRecord] = [:]
        for message in try await self.chats.messages(in: Array(ranges)) { messages["\(message.chatID)/\(message.seq)"] = message }

        var events: [Event] = []
        for (entry, envelope) in parsed {
            let id = "evt_\(entry.id)", time = Self.time(of: entry.id)
            switch envelope.kind {
            case .message, .messageUpdated:
                guard let chat = envelope.chatID, let seq = envelope.seq, let message = messages["\(chat)/\(seq)"] else { continue }
                let type = envelope.kind == .message ? "message.created" : "message.updated"
                events.append(Event(id: id, body: try Self.body(type: type, timestamp: time, data: MessageBody(message))))
            case .memberAdded, .memberRemoved:
                guard let chat = envelope.chatID, let user = envelope.userID else { continue }
                let type = envelope.kind == .memberAdded ? "member.added" : "member.removed"
                events.append(Event(id: id, body: try Self.body(type: type, timestamp: time, data: Membership(chatID: chat.lowercased, userID: user.lowercased))))
            case .userRegistered:
                guard let userID = envelope.userID else { continue }
                // an account deleted since: its id alone
                let user = try await self.accounts.user(id: userID)
                let data = NewUser(id: userID.lowercased, displayName: user?.displayName, createdAt: user.map { Timestamp.format($0.createdAt) })
                events.append(Event(id: id, body: try Self.body(type: "user.registered", timestamp: time, data: data)))
            case .read, .reaction, .typing, .presence, .chatUpdated:
                continue
            }
        }
        return events
    }

    /// When the gateway appended the entry: its id's milliseconds.
    static func time(of entryID: String) -> Date {
        let milliseconds = entryID.split(separator: "-").first.flatMap { Int64($0) } ?? 0
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    // MARK: delivery

    /// One attempt; on failure the next one is scheduled, or the job is
    /// dead-lettered. False when neither could be recorded (Redis failed):
    /// the lease then runs out and the job is tried again.
    func attempt(_ job: WebhookJob) async -> Bool {
        guard let error = await self.sender.send(Data(job.event.body.utf8), id: job.event.id, to: job.url) else {
            NotificationMetrics.count("webhook", "sent")
            return true
        }
        // the URL's host only: a path or query may carry the receiver's token
        let metadata: Logger.Metadata = ["webhook.id": "\(job.event.id)", "webhook.host": "\(job.url.host ?? "?")", "error": "\(error)"]
        do {
            if let dueAt = self.retries.next(attempt: job.attempt, firstAt: job.firstAt, now: DueSet.now()) {
                var next = job
                next.attempt += 1
                try await self.queue.due.schedule([try next.encoded()], at: dueAt, keepEarlier: false)
                NotificationMetrics.count("webhook", "retried")
                self.logger.info("webhook delivery failed; retrying later", metadata: metadata.merging(["webhook.attempt": "\(job.attempt + 1)"]) { $1 })
            } else {
                try await self.redis.xadd(
                    Self.deadLetters, maxLength: 100_000,
                    fields: [
                        ("url", .string(job.url.absoluteString)), ("id", .string(job.event.id)), ("body", .string(job.event.body)),
                        ("error", .string(error)), ("attempts", .string(String(job.attempt + 1))),
                    ]
                )
                NotificationMetrics.count("webhook", "dead_lettered")
                self.logger.error("webhook delivery given up: moved to the dead-letter stream", metadata: metadata)
            }
            return true
        } catch {
            self.logger.warning("a failed webhook could not be rescheduled; it is tried again when its lease ends", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Moves every dead-lettered webhook back: due now, with a new retry window.
    public static func replayDead(redis: RedisClient) async throws -> Int {
        var moved = 0
        for entry in try await redis.xrange(Self.deadLetters, count: 10_000) {
            if let url = entry["url"].flatMap(URL.init(string:)), let id = entry["id"], let body = entry["body"] {
                let job = WebhookJob(url: url, event: Event(id: id, body: body), firstAt: DueSet.now())
                try await DueSet(redis: redis, key: Self.jobsKey).schedule([try job.encoded()], at: DueSet.now(), keepEarlier: false)
                moved += 1
            }
            _ = try await redis.send("XDEL", .string(Self.deadLetters), .string(entry.id))
        }
        return moved
    }
}

/// What a webhook POSTs.
struct WebhookBody<Payload: Encodable>: Encodable {
    let type: String
    let timestamp: String
    let data: Payload
}

/// One webhook to one URL, as a job (JSON in `webhooks:jobs`).
struct WebhookJob: DueJob, Sendable, Equatable {
    var url: URL
    var id: String
    var body: String
    var attempt: Int
    /// Unix ms of the first attempt.
    var firstAt: Int64

    var event: WebhookWorker.Event { WebhookWorker.Event(id: self.id, body: self.body) }

    init(url: URL, event: WebhookWorker.Event, attempt: Int = 0, firstAt: Int64 = DueSet.now()) {
        self.url = url
        self.id = event.id
        self.body = event.body
        self.attempt = attempt
        self.firstAt = firstAt
    }


}
