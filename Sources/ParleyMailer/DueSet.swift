import Foundation
import Synchronization
import HiredisNIO
import ParleyCore

/// Jobs due at a time, shared by every worker: a Redis sorted set of
/// members scored by their due time (Unix milliseconds). A worker takes a
/// due member by moving its score forward by a lease (a script, so two
/// workers never take the same one); a member that is neither finished nor
/// rescheduled when its lease ends is due again, so a worker that dies
/// mid-job leaves it to the others. The digests (one member per user) and
/// the push retries use it.
struct DueSet: Sendable {
    let redis: RedisClient
    let key: String

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Adds members due at `dueAt`; with `keepEarlier`, a member already
    /// there keeps its time (ZADD NX).
    func schedule(_ members: [String], at dueAt: Int64, keepEarlier: Bool) async throws {
        guard !members.isEmpty else { return }
        let flags: [RedisArgument] = keepEarlier ? ["NX"] : []
        _ = try await self.redis.send(RedisCommand("ZADD", [.string(self.key)] + flags + members.flatMap { [RedisArgument(dueAt), .string($0)] }))
    }

    /// Up to `limit` members due now, each leased to this worker for `lease`
    /// (taken and leased in one script, so no two workers take one member).
    /// Nothing when Redis cannot be reached: the caller asks again later.
    func takeDue(limit: Int, lease: Duration) async -> [String] {
        guard limit > 0 else { return [] }
        let taken = try? await self.redis.evalsha(
            Self.takeScript, keys: [self.key], arguments: [RedisArgument(Self.now()), RedisArgument(lease.milliseconds), RedisArgument(Int64(limit))]
        )
        return taken?.array?.compactMap(\.string) ?? []
    }

    /// Schedules many members due at once, in chunks of 500.
    func scheduleNow(_ members: [String]) async throws {
        var start = 0
        while start < members.count {
            let chunk = Array(members[start..<min(start + 500, members.count)])
            try await self.schedule(chunk, at: Self.now(), keepEarlier: false)
            start += chunk.count
        }
    }

    func finish(_ member: String) async throws {
        _ = try await self.redis.zrem(self.key, [member])
    }

    /// Takes up to ARGV[3] members due at ARGV[1] (ms) and moves each ARGV[2] ms forward: its lease.
    static let takeScript = RedisScript(
        """
        local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
        for _, member in ipairs(due) do
          redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
        end
        return due
        """
    )
}

/// A job a `DueSet` holds, as JSON (its member string).
protocol DueJob: Codable {}

extension DueJob {
    func encoded() throws -> String { String(decoding: try JSONEncoder().encode(self), as: UTF8.self) }

    init?(encoded: String) {
        guard let job = try? JSONDecoder().decode(Self.self, from: Data(encoded.utf8)) else { return nil }
        self = job
    }
}

/// Runs the jobs of a due set as they fall due, up to `concurrency` at a
/// time, each leased for `lease` while it runs (longer than an attempt can
/// take: a worker that dies mid-attempt leaves the job to another when the
/// lease ends). `attempt` answers whether the job is done with (delivered,
/// given up, or rescheduled under a new member): it is then removed; else
/// it waits for its lease to end and is tried again. Polls every 50 ms when
/// nothing is due or all slots are busy.
struct DueJobRunner: Sendable {
    let due: DueSet
    let concurrency: Int
    let lease: Duration

    func run(_ attempt: @escaping @Sendable (String) async -> Bool) async throws {
        let inFlight = InFlight()
        try await withThrowingDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let free = self.concurrency - inFlight.count
                let members = await self.due.takeDue(limit: free, lease: self.lease)
                for member in members {
                    inFlight.add(1)
                    group.addTask {
                        if await attempt(member) { try? await self.due.finish(member) }
                        inFlight.add(-1)
                    }
                }
                if members.count < free || free <= 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
        }
    }

    private final class InFlight: Sendable {
        private let value = Mutex(0)
        var count: Int { self.value.withLock { $0 } }
        func add(_ delta: Int) { self.value.withLock { $0 += delta } }
    }
}
