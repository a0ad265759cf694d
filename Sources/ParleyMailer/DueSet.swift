import Foundation
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
    /// (those another worker took first are left out). Nothing when Redis
    /// cannot be reached: the caller asks again later.
    func takeDue(limit: Int, lease: Duration) async -> [String] {
        let now = Self.now()
        guard let due = try? await self.redis.zrangeByScore(self.key, min: "-inf", max: String(now), limit: limit) else { return [] }
        var taken: [String] = []
        for member in due {
            let leased = try? await self.redis.evalsha(
                Self.leaseScript, keys: [self.key], arguments: [.string(member), RedisArgument(now), RedisArgument(lease.milliseconds)]
            )
            if leased?.int == 1 { taken.append(member) }
        }
        return taken
    }

    func finish(_ member: String) async throws {
        _ = try await self.redis.zrem(self.key, [member])
    }

    /// Takes a due member if it is still due (another worker may have leased it).
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
