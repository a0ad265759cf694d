import Foundation
public import HiredisNIO

/// "At most `limit` events per `window`".
public struct RateLimitRule: Sendable, Hashable {
    public var limit: Int
    public var window: Duration

    public init(_ limit: Int, per window: Duration) {
        self.limit = limit
        self.window = window
    }

    var windowMilliseconds: Int64 { self.window.milliseconds }
}

public enum RateLimitDecision: Sendable, Hashable {
    case allowed
    /// Seconds until the next event would be allowed (at least 1).
    case limited(retryAfter: Int)
}

/// Exact sliding-window limits shared by every instance through Redis.
///
/// One sorted set per subject holds the times of its events; several rules
/// (1 per minute and 5 per hour, say) are checked against the same set in
/// one atomic script, with Redis' clock, so instances never disagree.
/// Keys are single-subject, so this works unchanged on Redis Cluster.
public struct RateLimiter: Sendable {
    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// Counts an event if every rule allows it.
    public func hit(_ key: String, _ rules: [RateLimitRule]) async throws -> RateLimitDecision {
        try await self.run(key, rules, member: UUID().uuidString)
    }

    /// Counts an attempt now (so parallel attempts cannot all slip under the
    /// limit) under `token`; `giveBack` removes it if the attempt is not to count.
    public func reserve(_ key: String, _ rules: [RateLimitRule], token: String) async throws -> RateLimitDecision {
        try await self.run(key, rules, member: token)
    }

    public func giveBack(_ key: String, token: String) async throws {
        _ = try await self.redis.send("ZREM", .string("rl:{\(key)}"), .string(token))
    }

    private func run(_ key: String, _ rules: [RateLimitRule], member: String) async throws -> RateLimitDecision {
        var arguments: [RedisArgument] = [.string(member)]
        for rule in rules {
            arguments += [RedisArgument(rule.windowMilliseconds), RedisArgument(rule.limit)]
        }
        let waitMilliseconds = try await self.redis.evalsha(Self.script, keys: ["rl:{\(key)}"], arguments: arguments).int ?? 0
        return waitMilliseconds <= 0 ? .allowed : .limited(retryAfter: Int((waitMilliseconds + 999) / 1000))
    }

    static let script = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local longest = 0
        local wait = 0
        for i = 2, #ARGV, 2 do
          local window = tonumber(ARGV[i])
          local limit = tonumber(ARGV[i + 1])
          if window > longest then longest = window end
          local count = redis.call('ZCOUNT', KEYS[1], now - window + 1, '+inf')
          if count >= limit then
            local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], now - window + 1, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
            local w = tonumber(oldest[2]) + window - now
            if w > wait then wait = w end
          end
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
        if wait > 0 then return wait end
        redis.call('ZADD', KEYS[1], now, ARGV[1])
        redis.call('PEXPIRE', KEYS[1], longest)
        return 0
        """
    )
}
