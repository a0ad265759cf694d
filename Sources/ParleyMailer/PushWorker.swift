import Foundation
public import HiredisNIO
public import Logging
import Metrics
import NIOCore
public import ParleyCore
public import ServiceLifecycle
import ParleyChat

/// Web Push (PROTOCOL.md 1.1 "Push"): one push per new message to each
/// subscription of each member it notifies who has no open WebSocket, and
/// the retraction of pushes once their messages are read.
///
/// 1. Consumes `events:messages` (group `push`). A new message: the
///    targets PostgreSQL names (`PushStore.targets`: chat settings and
///    mentions through `parley_notifies`, unread, live sessions) less the
///    members Redis has online. A read position: each subscription of the
///    reader that was pushed something of that chat, up to what they read,
///    gets a silent update with the same `Topic`, so the push service
///    replaces a push it still holds and the service worker closes one it
///    showed (`{"type": "read", "chat_id", "seq"}`). Either way the pushes
///    become jobs in the sorted set `push:jobs`, due at once, and the
///    entries are acknowledged: a slow push service never holds the stream.
///    Once caught up, events gather for 250 ms between reads, so that a busy
///    chat costs PostgreSQL one query per read rather than one per message.
/// 2. `DueJobRunner` sends the due jobs, 32 at a time, each leased while it
///    runs. 404/410 deletes the subscription. 429, 5xx and network errors
///    are tried again with exponential backoff (at least Retry-After) for at
///    most `retryWindow`; a retry first checks that the message is still
///    unread, so reading a chat on any device cancels the pushes still
///    queued for it.
///
/// At least once: a worker that dies after a push but before finishing its
/// job leaves it to another, which pushes again; the same `Topic` collapses
/// the two at the push service, and the web client's notification tag (the
/// chat) shows one. Jobs hold their payload (the preview) in Redis until
/// they are sent or given up.
public final class PushWorker: Service {
    public static let group = "push"
    public static let jobsKey = "push:jobs"
    /// Per user, a hash `<chat>/<subscription>` → the last seq pushed there: what a read retracts.
    static func shownKey(_ userID: UUID) -> String { "push:shown:{\(userID.lowercased)}" }

    /// Once caught up, events gather this long between reads: one targets
    /// query per read, not per message (a push is that much later at most).
    static let gather = Duration.milliseconds(250)
    /// How long a push service keeps a push for an offline device.
    static let ttl = 24 * 3600
    /// 1 s, 2 s, 4 s… up to 5 min, for `retryWindow` (an hour by default).
    let retries: RetrySchedule
    let queue: EventJobWorker
    let redis: RedisClient
    let store: PushStore
    let sender: WebPushSender
    let logger: Logger
    let undecodable = Counter(label: "parley_events_undecodable_total")

    public init(
        redis: RedisClient, store: PushStore, sender: WebPushSender, consumer: String, claimIdle: Duration, retryWindow: Duration = .seconds(3600),
        logger: Logger
    ) {
        self.redis = redis
        self.store = store
        self.sender = sender
        self.queue = EventJobWorker(
            redis: redis, group: Self.group, jobsKey: Self.jobsKey, consumer: consumer, claimIdle: claimIdle, gather: Self.gather, logger: logger
        )
        self.retries = RetrySchedule(first: .seconds(1), cap: .seconds(300), window: retryWindow)
        self.logger = logger
    }

    /// Notifications per channel and outcome: sent, failed (refused by the
    /// service, or out of retries), retried, gone (subscription deleted),
    /// retracted (read before a retry).
    static func count(_ outcome: String) {
        NotificationMetrics.count("push", outcome)
    }

    public func run() async throws {
        try await self.queue.run(
            jobs: { entries in try await self.jobs(for: entries).map { try $0.encoded() } },
            attempt: { member in
                guard let job = PushJob(encoded: member) else { return true }
                return await self.attempt(job)
            },
            cleanup: self.sender.shutdown
        )
    }

    // MARK: events

    /// A read position off the stream.
    struct Read: Hashable {
        var chatID: UUID
        var userID: UUID
        var seq: Int64
    }

    /// The pushes a read of entries calls for.
    func jobs(for entries: [RedisStreamEntry]) async throws -> [PushJob] {
        var messages: [MailStore.NewMessageRef] = []
        var reads: [Read] = []
        for entry in entries {
            do {
                if let message = try DigestWorker.newMessage(entry) {
                    messages.append(message)
                } else if let header = entry[EventStreams.envelopeField] {
                    let envelope = try EventEnvelope.decode(header: header)
                    if envelope.kind == .read, let chat = envelope.chatID, let user = envelope.userID, let seq = envelope.seq {
                        reads.append(Read(chatID: chat, userID: user, seq: seq))
                    }
                }
            } catch {
                self.undecodable.increment()
                self.logger.warning("skipped a stream entry this notifier cannot read", metadata: ["entry.id": "\(entry.id)", "error": "\(error)"])
            }
        }
        return try await self.messageJobs(messages) + self.retractionJobs(reads)
    }

    func messageJobs(_ messages: [MailStore.NewMessageRef]) async throws -> [PushJob] {
        let targets = try await self.store.targets(of: messages)
        guard !targets.isEmpty else { return [] }
        let online = Set(try await PresenceKeys.online(Array(Set(targets.map(\.subscription.userID))), redis: self.redis))
        let now = DueSet.now()
        return try targets.filter { !online.contains($0.subscription.userID) }.map { target in
            var job = PushJob(
                kind: .message, subscription: target.subscription.id, userID: target.subscription.userID, chatID: target.chatID, seq: target.seq,
                payload: try Self.messagePayload(target), urgency: target.direct || target.mentioned ? "high" : "normal", attempt: 0, firstAt: now
            )
            job.target = PushJob.Target(
                endpoint: target.subscription.endpoint, p256dh: Secrets.base64URL(target.subscription.p256dh), auth: Secrets.base64URL(target.subscription.auth)
            )
            return job
        }
    }

    /// `{"type": "message", "chat_id", "seq", "sender": User, "preview"}`.
    static func messagePayload(_ target: PushStore.Target) throws -> String {
        let object: [String: Any] = [
            "type": "message", "chat_id": target.chatID.lowercased, "seq": target.seq,
            "sender": ["id": target.senderID.lowercased, "display_name": target.senderName, "created_at": Timestamp.format(target.senderCreatedAt)],
            "preview": String(target.preview.prefix(200)),
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// For each read: the reader's subscriptions that were pushed something of
    /// that chat, up to the seq read, get a silent update (taken off the
    /// record in one script, so a push recorded meanwhile is not lost).
    func retractionJobs(_ reads: [Read]) async throws -> [PushJob] {
        var jobs: [PushJob] = []
        for read in Set(reads) {
            let taken = try await self.redis.evalsha(
                Self.retractScript, keys: [Self.shownKey(read.userID)], arguments: [.string(read.chatID.lowercased + "/"), RedisArgument(read.seq)]
            )
            let subscriptions = (taken.array ?? []).compactMap { $0.string.flatMap(UUID.init(uuidString:)) }
            guard !subscriptions.isEmpty else { continue }
            let payload = String(
                decoding: try JSONSerialization.data(withJSONObject: ["type": "read", "chat_id": read.chatID.lowercased, "seq": read.seq], options: [.sortedKeys]),
                as: UTF8.self
            )
            for subscription in subscriptions {
                jobs.append(
                    PushJob(
                        kind: .read, subscription: subscription, userID: read.userID, chatID: read.chatID, seq: read.seq, payload: payload,
                        urgency: "low", attempt: 0, firstAt: DueSet.now()
                    )
                )
            }
        }
        return jobs
    }

    /// Removes and returns the subscriptions of KEYS[1] whose field starts with
    /// ARGV[1] (`<chat>/`) and holds a seq at most ARGV[2].
    static let retractScript = RedisScript(
        """
        local fields = redis.call('HGETALL', KEYS[1])
        local taken = {}
        for i = 1, #fields, 2 do
          local field, seq = fields[i], tonumber(fields[i + 1])
          if string.sub(field, 1, #ARGV[1]) == ARGV[1] and seq <= tonumber(ARGV[2]) then
            redis.call('HDEL', KEYS[1], field)
            table.insert(taken, string.sub(field, #ARGV[1] + 1))
          end
        end
        return taken
        """
    )

    // MARK: delivery

    /// One attempt: loads the subscription (its current keys; nothing if it
    /// was deleted), checks a message is still unread on a retry, pushes,
    /// and acts on the answer. True once the job is done with.
    func attempt(_ job: PushJob) async -> Bool {
        do {
            var target = job.target
            if target == nil {
                guard let subscription = try await self.store.subscription(job.subscription), subscription.userID == job.userID else { return true }
                target = PushJob.Target(endpoint: subscription.endpoint, p256dh: Secrets.base64URL(subscription.p256dh), auth: Secrets.base64URL(subscription.auth))
            }
            guard let target, let keys = WebPush.SubscriptionKeys(p256dh: target.p256dh, auth: target.auth), let endpoint = URL(string: target.endpoint)
            else { return true }
            if job.kind == .message, job.attempt > 0, !(try await self.store.isUnread(chatID: job.chatID, seq: job.seq, by: job.userID)) {
                Self.count("retracted")
                return true
            }
            let outcome = await self.sender.send(
                PushDelivery(
                    endpoint: endpoint, keys: keys, payload: Data(job.payload.utf8), topic: WebPush.topic(chatID: job.chatID), urgency: job.urgency,
                    ttl: Self.ttl
                )
            )
            return await self.handle(outcome, of: job)
        } catch {
            // PostgreSQL failed: try again like a push service error
            self.logger.warning("push attempt failed", metadata: ["error": "\(error)"])
            return await self.handle(.retry(after: nil), of: job)
        }
    }

    /// Acts on a push service's answer; false when a retry could not be
    /// scheduled (the job's lease then runs out and it is tried again).
    func handle(_ outcome: PushOutcome, of job: PushJob) async -> Bool {
        let metadata: Logger.Metadata = ["push.subscription": "\(job.subscription.lowercased)", "chat.id": "\(job.chatID.lowercased)"]
        switch outcome {
        case .accepted:
            Self.count("sent")
            if job.kind == .message {
                let key = Self.shownKey(job.userID)
                _ = try? await self.redis.pipeline([
                    RedisCommand("HSET", [.string(key), .string("\(job.chatID.lowercased)/\(job.subscription.lowercased)"), RedisArgument(job.seq)]),
                    RedisCommand("EXPIRE", [.string(key), RedisArgument(Int64(Self.ttl))]),
                ])
            }
        case .gone:
            Self.count("gone")
            try? await self.store.remove(job.subscription)
            self.logger.info("push subscription gone (404/410): deleted", metadata: metadata)
        case .rejected(let status):
            Self.count("failed")
            self.logger.warning("push refused by the push service", metadata: metadata.merging(["http.status": "\(status)"]) { $1 })
        case .retry(let after):
            guard let dueAt = self.retries.next(attempt: job.attempt, firstAt: job.firstAt, notBefore: after, now: DueSet.now()) else {
                Self.count("failed")
                self.logger.warning("push given up after its retries", metadata: metadata.merging(["push.attempts": "\(job.attempt + 1)"]) { $1 })
                return true
            }
            var next = job
            next.attempt += 1
            next.target = nil  // read again: the subscription may have changed or gone
            do {
                try await self.queue.due.schedule([try next.encoded()], at: dueAt, keepEarlier: false)
                Self.count("retried")
            } catch {
                return false
            }
        }
        return true
    }
}

/// One push to one subscription, as a job (JSON in `push:jobs`).
struct PushJob: DueJob, Sendable, Equatable {
    enum Kind: String, Codable { case message, read }
    var kind: Kind
    var subscription: UUID
    var userID: UUID
    var chatID: UUID
    var seq: Int64
    /// The JSON the service worker receives.
    var payload: String
    var urgency: String
    var attempt: Int
    /// Unix ms of the first attempt.
    var firstAt: Int64
    /// The subscription as it was read for the first attempt (which then
    /// needs no query of its own); a retry reads it again.
    var target: Target?

    struct Target: Codable, Equatable {
        var endpoint: String
        var p256dh: String
        var auth: String
    }

    init(kind: Kind, subscription: UUID, userID: UUID, chatID: UUID, seq: Int64, payload: String, urgency: String, attempt: Int, firstAt: Int64) {
        self.kind = kind
        self.subscription = subscription
        self.userID = userID
        self.chatID = chatID
        self.seq = seq
        self.payload = payload
        self.urgency = urgency
        self.attempt = attempt
        self.firstAt = firstAt
    }
}
