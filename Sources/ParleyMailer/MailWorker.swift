import Crypto
import Foundation
public import HiredisNIO
public import Logging
import Metrics
import NIOCore
public import ParleyCore
public import ServiceLifecycle

/// A member of the `mailers` consumer group on the Redis stream `mail:jobs`.
///
/// - reads new entries in batches (`XREADGROUP … >`), after first re-reading
///   its own pending ones (a restart finishes what it had);
/// - acknowledges an entry only after the SMTP server accepted the mail,
///   and records it in PostgreSQL (`mail_sent`) first, so a crash between the
///   two never sends it twice;
/// - claims entries idle longer than `retryAfter` (`XAUTOCLAIM`), from dead
///   workers or its own failures, and after `maxDeliveries` failed attempts
///   moves an entry to the dead-letter stream `mail:dead` with the last error.
public final class MailWorker: Service {
    public static let group = "mailers"
    public static let deadLetters = "mail:dead"

    let configuration: MailerConfiguration
    let redis: RedisClient
    let store: MailStore
    let transport: any MailTransport
    let mailKey: SymmetricKey
    let logger: Logger
    let sent = Counter(label: "parley_mails_sent_total", dimensions: [("kind", "otp")])
    let failedDeliveries = Counter(label: "parley_mail_failures_total")
    let retried = Counter(label: "parley_mail_retries_total")
    let deadLettered = Counter(label: "parley_mails_dead_lettered_total")
    let lag = Gauge(label: "parley_mail_stream_lag")
    let pending = Gauge(label: "parley_mail_stream_pending")

    public init(configuration: MailerConfiguration, redis: RedisClient, store: MailStore, transport: any MailTransport, logger: Logger) {
        self.configuration = configuration
        self.redis = redis
        self.store = store
        self.transport = transport
        self.mailKey = configuration.mailKey
        var logger = logger
        logger[metadataKey: "mailer.consumer"] = "\(configuration.consumer)"
        self.logger = logger
    }

    public func run() async throws {
        try await self.redis.xgroupCreate(OneTimeCodes.mailStream, group: Self.group, startID: "0")
        self.logger.info("mailer started", metadata: ["mail.transport": "\(self.transport.description)"])
        try await untilGracefulShutdown {
            let consumer = StreamGroupConsumer(
                redis: self.redis, stream: OneTimeCodes.mailStream, group: Self.group, consumer: self.configuration.consumer, count: 16,
                claimIdle: self.configuration.retryAfter, logger: self.logger
            )
            try await consumer.run(tick: { await consumer.measure(lag: self.lag, pending: self.pending) }) { entries, claimed in
                if claimed {
                    self.retried.increment(by: entries.count)
                    NotificationMetrics.count("mail", "retried", by: entries.count)
                }
                for entry in entries { await self.process(entry) }
            }
        }
    }

    func process(_ entry: RedisStreamEntry) async {
        do {
            try await self.deliver(entry)
            try await self.redis.xack(OneTimeCodes.mailStream, group: Self.group, ids: [entry.id])
        } catch {
            await self.failed(entry, error: error)
        }
    }

    func deliver(_ entry: RedisStreamEntry) async throws {
        let key = entry["id"] ?? entry.id
        guard try await !self.store.alreadySent(key) else {
            self.logger.info("mail already sent; acknowledging", metadata: ["mail.id": "\(key)"])
            return
        }
        switch entry["kind"] {
        case "otp":
            guard let to = entry["to"], let box = entry["code_box"], let expires = entry["expires_at"].flatMap(Int64.init) else {
                throw MailDeliveryError(description: "malformed otp job")
            }
            guard Int64(Date().timeIntervalSince1970 * 1000) < expires else {
                self.logger.info("one-time code expired before it could be mailed; dropped", metadata: ["mail.id": "\(key)"])
                return
            }
            let code = try Secrets.open(box, key: self.mailKey)
            try await self.transport.send(Self.codeMail(code: code, to: to, from: self.configuration.from, messageID: "\(key)@parley"))
            try await self.store.recordSent(key, kind: "otp")
            self.sent.increment()
            NotificationMetrics.count("mail", "sent")
            self.logger.info("code mail sent", metadata: ["mail.id": "\(key)"])
        default:
            throw MailDeliveryError(description: "unknown mail job kind \(entry["kind"] ?? "none")")
        }
    }

    func failed(_ entry: RedisStreamEntry, error: any Error) async {
        self.failedDeliveries.increment()
        NotificationMetrics.count("mail", "failed")
        let deliveries = (try? await self.redis.xpending(OneTimeCodes.mailStream, group: Self.group, start: entry.id, end: entry.id, count: 1).first?.deliveries) ?? 1
        self.logger.warning("mail delivery failed", metadata: ["mail.entry": "\(entry.id)", "mail.deliveries": "\(deliveries)", "error": "\(error)"])
        guard deliveries >= Int64(self.configuration.maxDeliveries) else { return }  // claimed again after retryAfter
        var fields: [(String, RedisArgument)] = entry.fields.sorted { $0.key < $1.key }.map { ($0.key, .bytes($0.value)) }
        fields += [("source_id", .string(entry.id)), ("error", .string("\(error)")), ("deliveries", RedisArgument(deliveries))]
        do {
            try await self.redis.xadd(Self.deadLetters, maxLength: 100_000, fields: fields)
            try await self.redis.xack(OneTimeCodes.mailStream, group: Self.group, ids: [entry.id])
            self.deadLettered.increment()
            NotificationMetrics.count("mail", "dead_lettered")
            self.logger.error("mail moved to the dead-letter stream", metadata: ["mail.entry": "\(entry.id)", "error": "\(error)"])
        } catch {
            self.logger.warning("could not dead-letter a mail; it stays pending", metadata: ["error": "\(error)"])
        }
    }

    /// Moves every dead-lettered entry back onto the mail stream. Returns how many.
    public static func replayDead(redis: RedisClient) async throws -> Int {
        var moved = 0
        for entry in try await redis.xrange(Self.deadLetters, count: 10_000) {
            let fields = entry.fields.filter { !["error", "deliveries", "source_id"].contains($0.key) }.sorted { $0.key < $1.key }
            try await redis.xadd(OneTimeCodes.mailStream, maxLength: 100_000, fields: fields.map { ($0.key, .bytes($0.value)) })
            _ = try await redis.send("XDEL", .string(Self.deadLetters), .string(entry.id))
            moved += 1
        }
        return moved
    }

    static func codeMail(code: String, to: String, from: MailMessage.Address, messageID: String) -> MailMessage {
        MailMessage(
            from: from, to: .init(email: to), subject: "Your Parley sign-in code",
            text: "Your Parley sign-in code is \(code).\n\nIt works once and expires in 5 minutes. If you did not ask for it, ignore this mail.\n",
            html: "<p>Your Parley sign-in code is <strong>\(code)</strong>.</p><p>It works once and expires in 5 minutes. If you did not ask for it, ignore this mail.</p>",
            messageID: messageID
        )
    }
}
