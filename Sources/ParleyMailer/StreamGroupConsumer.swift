import HiredisNIO
import Logging
import Metrics
import ParleyCore
import ParleyChat
import ServiceLifecycle

/// One consumer of a Redis stream consumer group, as both mail workers use it.
///
/// It reads its own pending entries first (what it had read but not
/// acknowledged before a restart under the same name), then new ones. Every
/// few seconds it claims the entries nobody acknowledged for `claimIdle`,
/// its own included: those of a consumer that died (consumer names change
/// across restarts), and those whose handling failed, which are thus tried
/// again. `handle` gets each batch and acknowledges what it finished.
struct StreamGroupConsumer: Sendable {
    let redis: RedisClient
    let stream: String
    let group: String
    let consumer: String
    /// Entries per read.
    let count: Int
    let claimIdle: Duration
    /// After a read that found less than `count` new entries, wait this long
    /// before the next one, so that entries gather into bigger batches.
    var gather: Duration = .zero
    let logger: Logger

    /// Runs until cancelled. `claimed` is true for entries taken over by a
    /// claim; `tick` runs after each claim round.
    func run(
        tick: @Sendable () async -> Void = {},
        _ handle: @Sendable (_ entries: [RedisStreamEntry], _ claimed: Bool) async -> Void
    ) async throws {
        var lastClaim = ContinuousClock.now
        // A connection of its own (reads block), on the node of the stream's
        // slot in a cluster: opened again when it drops (a Redis restart, a
        // failover), which starts again from this consumer's own pending entries.
        while !Task.isCancelled {
            do {
                try await self.redis.withDedicatedConnection(forKey: self.stream) { connection in
                    try await self.read(on: connection, lastClaim: &lastClaim, tick: tick, handle)
                }
            } catch is CancellationError {
                return
            } catch {
                self.logger.warning("cannot reach the stream; retrying", metadata: ["stream": "\(self.stream)", "error": "\(error)"])
            }
            if Task.isCancelled { return }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func read(
        on connection: RedisConnection, lastClaim: inout ContinuousClock.Instant,
        tick: @Sendable () async -> Void,
        _ handle: @Sendable (_ entries: [RedisStreamEntry], _ claimed: Bool) async -> Void
    ) async throws {
        var cursor = "0"
        while !Task.isCancelled {
            let entries: [RedisStreamEntry]
            do {
                entries = try await connection.xreadgroup(
                    self.stream, group: self.group, consumer: self.consumer, id: cursor, count: self.count,
                    blockMilliseconds: cursor == ">" ? 1000 : nil
                )
            } catch {
                self.logger.warning("reading the stream failed; retrying", metadata: ["stream": "\(self.stream)", "error": "\(error)"])
                // reconnect when the connection dropped, or the stream's slot lives elsewhere now
                guard connection.isActive, (error as? RedisError)?.serverErrorPrefix != "MOVED" else { return }
                try await Task.sleep(for: .seconds(1))
                continue
            }
            let readingOwnPending = cursor != ">"
            if !entries.isEmpty { await handle(entries, false) }
            if readingOwnPending { cursor = entries.last?.id ?? ">" }
            if ContinuousClock.now - lastClaim >= min(self.claimIdle / 2, .seconds(5)) {
                lastClaim = ContinuousClock.now
                await self.claim(handle)
                await tick()
            }
            if !readingOwnPending, entries.count < self.count, self.gather > .zero { try await Task.sleep(for: self.gather) }
        }
    }

    /// Records the group's entries not yet read (XINFO GROUPS "lag") and
    /// read but not acknowledged ("pending").
    func measure(lag: Gauge, pending: Gauge) async {
        guard let groups = try? await self.redis.send("XINFO", "GROUPS", .string(self.stream)).array else { return }
        for group in groups {
            guard let fields = group.array else { continue }
            var info: [String: RedisValue] = [:]
            var index = 0
            while index + 1 < fields.count {
                if let name = fields[index].string { info[name] = fields[index + 1] }
                index += 2
            }
            guard info["name"]?.string == self.group else { continue }
            if let value = info["lag"]?.int { lag.record(value) }
            if let value = info["pending"]?.int { pending.record(value) }
        }
    }

    private func claim(_ handle: @Sendable ([RedisStreamEntry], Bool) async -> Void) async {
        var start = "0-0"
        repeat {
            guard let claimed = try? await self.redis.xautoclaim(
                self.stream, group: self.group, consumer: self.consumer, minIdleMilliseconds: Int(self.claimIdle.milliseconds), start: start, count: 50
            ) else { return }
            if !claimed.entries.isEmpty { await handle(claimed.entries, true) }
            start = claimed.next
        } while start != "0-0"
    }
}

/// Runs `body` until it ends or the service is told to shut down; a
/// shutdown is a normal end (the cancellation it causes is not an error),
/// so a mail worker stopped with SIGTERM or Ctrl-C exits quietly with 0.
func untilGracefulShutdown(_ body: @escaping @Sendable () async throws -> Void) async throws {
    do {
        try await cancelWhenGracefulShutdown(body)
    } catch is CancellationError where Task.isShuttingDownGracefully || Task.isCancelled {
        return
    }
}

/// The one shape of the push and webhook workers: a consumer group on
/// `events:messages` (created from new entries on) whose events become jobs
/// in a `DueSet`, queued before the entries are acknowledged (a slow
/// endpoint never holds the stream), and a `DueJobRunner` that sends due
/// jobs 32 at a time, each leased for `claimIdle` but at least 15 s (an
/// attempt takes at most a sender's 10 s): a job of a worker that died is
/// taken over when its lease ends. `parley_notifier_stream_lag` and
/// `_pending` are recorded per group. Once caught up, a worker whose jobs
/// cost a query per read lets events `gather` into bigger reads.
struct EventJobWorker: Sendable {
    /// The group's consumer of `events:messages`, reading 200 entries at a time.
    let consumer: StreamGroupConsumer
    let due: DueSet

    init(redis: RedisClient, group: String, jobsKey: String, consumer: String, claimIdle: Duration, gather: Duration = .zero, logger: Logger) {
        self.consumer = StreamGroupConsumer(
            redis: redis, stream: EventStreams.messages, group: group, consumer: consumer, count: 200, claimIdle: claimIdle, gather: gather, logger: logger
        )
        self.due = DueSet(redis: redis, key: jobsKey)
    }

    /// Runs until a graceful shutdown: `jobs` turns a read of entries into
    /// job members, `attempt` sends one (true once it is done with), and
    /// `cleanup` runs at the end whatever happened.
    func run(
        jobs: @escaping @Sendable ([RedisStreamEntry]) async throws -> [String],
        attempt: @escaping @Sendable (String) async -> Bool,
        cleanup: @Sendable () async -> Void
    ) async throws {
        let (consumer, redis, stream, group) = (self.consumer, self.consumer.redis, self.consumer.stream, self.consumer.group)
        let lag = Gauge(label: "parley_notifier_stream_lag", dimensions: [("group", group)])
        let pending = Gauge(label: "parley_notifier_stream_pending", dimensions: [("group", group)])
        let runner = DueJobRunner(due: self.due, concurrency: 32, lease: max(consumer.claimIdle, .seconds(15)))
        do {
            try await redis.xgroupCreate(stream, group: group, startID: "$")
            try await untilGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        try await consumer.run(tick: { await consumer.measure(lag: lag, pending: pending) }) { entries, _ in
                            do {
                                try await self.due.scheduleNow(try await jobs(entries))
                                try await redis.xack(stream, group: group, ids: entries.map(\.id))
                            } catch {
                                consumer.logger.warning(
                                    "could not queue the jobs of these events; they stay pending and are tried again",
                                    metadata: ["group": "\(group)", "error": "\(error)"]
                                )
                            }
                        }
                    }
                    tasks.addTask { try await runner.run(attempt) }
                    try await tasks.waitForAll()
                }
            }
        } catch {
            await cleanup()
            throw error
        }
        await cleanup()
    }
}
