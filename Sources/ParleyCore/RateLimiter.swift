import Foundation
public import HiredisNIO
import Metrics
import Synchronization

/// "At most `limit` events (or units, such as bytes) per `window`".
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

/// A limit was reached: the caller is told to wait `retryAfter` seconds
/// (HTTP 429 `rate_limited` with Retry-After; a WebSocket `error` frame
/// with code `rate_limited`).
public struct RateLimited: Error, Sendable, Hashable {
    public let detail: String
    public let retryAfter: Int

    public init(_ detail: String, retryAfter: Int) {
        self.detail = detail
        self.retryAfter = retryAfter
    }
}

/// Exact sliding-window limits shared by every instance through Redis.
///
/// One sorted set per subject holds its events (member `<token>:<weight>`,
/// scored by time); several rules (1 per minute and 5 per hour, say) are
/// checked against the same set in one atomic script, with Redis' clock, so
/// instances never disagree. An event may weigh more than one (the bytes of
/// an upload). Keys are single-subject, so this works unchanged on Redis
/// Cluster.
///
/// While Redis is unreachable the same algorithm runs in this process's
/// memory (`LocalRateLimits`): limits keep holding, per instance instead of
/// across all of them, and nothing that needs a limit stops working.
public struct RateLimiter: Sendable {
    let redis: RedisClient
    let local: LocalRateLimits

    public init(redis: RedisClient, local: LocalRateLimits = LocalRateLimits()) {
        self.redis = redis
        self.local = local
    }

    /// Counts an event of `weight`, or throws `RateLimited` with `detail`.
    public func enforce(_ key: String, _ rules: [RateLimitRule], _ detail: String, weight: Int = 1) async throws {
        if case .limited(let retryAfter) = try await self.hit(key, rules, weight: weight) {
            throw RateLimited(detail, retryAfter: retryAfter)
        }
    }

    /// Counts an event of `weight` units if every rule allows it.
    public func hit(_ key: String, _ rules: [RateLimitRule], weight: Int = 1) async throws -> RateLimitDecision {
        try await self.run(key, rules, token: UUID().uuidString, weight: weight)
    }

    /// Counts an attempt now (so parallel attempts cannot all slip under the
    /// limit) under `token`; `giveBack` removes it if the attempt is not to count.
    public func reserve(_ key: String, _ rules: [RateLimitRule], token: String) async throws -> RateLimitDecision {
        try await self.run(key, rules, token: token, weight: 1)
    }

    public func giveBack(_ key: String, token: String) async throws {
        do {
            _ = try await self.redis.send("ZREM", .string(Self.redisKey(key)), .string("\(token):1"))
        } catch let error as RedisError where error.isUnavailable {
            self.local.giveBack(key, token: token)
        }
    }

    /// Whether `rules` would allow `weight` more units now, without counting anything.
    public func check(_ key: String, _ rules: [RateLimitRule], weight: Int = 1) async throws -> RateLimitDecision {
        try await self.run(key, rules, token: nil, weight: weight)
    }

    static func redisKey(_ key: String) -> String { "rl:{\(key)}" }

    private func run(_ key: String, _ rules: [RateLimitRule], token: String?, weight: Int) async throws -> RateLimitDecision {
        var arguments: [RedisArgument] = [.string(token.map { "\($0):\(weight)" } ?? ""), RedisArgument(weight)]
        for rule in rules {
            arguments += [RedisArgument(rule.windowMilliseconds), RedisArgument(rule.limit)]
        }
        let waitMilliseconds: Int64
        do {
            waitMilliseconds = try await self.redis.evalsha(Self.script, keys: [Self.redisKey(key)], arguments: arguments).int ?? 0
        } catch let error as RedisError where error.isUnavailable {
            self.local.fallbacks.increment()
            waitMilliseconds = self.local.run(key, rules, token: token, weight: weight)
        }
        return waitMilliseconds <= 0 ? .allowed : .limited(retryAfter: Int((waitMilliseconds + 999) / 1000))
    }

    /// ARGV: member (`token:weight`, empty to only check), weight, then
    /// window (ms) and limit for each rule. Returns 0 when allowed (and
    /// counted), else the milliseconds until the event would fit. Mirrors
    /// `SlidingWindow.decide`.
    static let script = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local weight = tonumber(ARGV[2])
        local longest = 0
        local wait = 0
        for i = 3, #ARGV, 2 do
          local window = tonumber(ARGV[i])
          local limit = tonumber(ARGV[i + 1])
          if window > longest then longest = window end
          local entries = redis.call('ZRANGEBYSCORE', KEYS[1], now - window + 1, '+inf', 'WITHSCORES')
          local used = 0
          for j = 1, #entries, 2 do used = used + (tonumber(string.match(entries[j], ':(%d+)$')) or 1) end
          if used + weight > limit then
            local w = window
            if weight <= limit then
              for j = 1, #entries, 2 do
                used = used - (tonumber(string.match(entries[j], ':(%d+)$')) or 1)
                if used + weight <= limit then
                  w = tonumber(entries[j + 1]) + window - now
                  break
                end
              end
            end
            if w < 1 then w = 1 end
            if w > wait then wait = w end
          end
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
        if wait > 0 then return wait end
        if ARGV[1] ~= '' then
          redis.call('ZADD', KEYS[1], now, ARGV[1])
          redis.call('PEXPIRE', KEYS[1], longest)
        end
        return 0
        """
    )
}

/// The sliding-window decision of `RateLimiter.script`, for the in-memory
/// fallback. Pure.
struct SlidingWindow {
    struct Event {
        var time: Int64
        var weight: Int
        var token: String
    }

    var events: [Event] = []

    /// 0 when `weight` more units fit every rule at `now` (then recorded
    /// under `token`, unless it is nil), else the milliseconds until they would.
    mutating func decide(now: Int64, rules: [RateLimitRule], token: String?, weight: Int) -> Int64 {
        let longest = rules.map(\.windowMilliseconds).max() ?? 0
        var wait: Int64 = 0
        for rule in rules {
            let window = rule.windowMilliseconds
            let inWindow = self.events.filter { $0.time > now - window }
            var used = inWindow.reduce(0) { $0 + $1.weight }
            guard used + weight > rule.limit else { continue }
            var w = window
            if weight <= rule.limit {
                for event in inWindow {
                    used -= event.weight
                    if used + weight <= rule.limit {
                        w = event.time + window - now
                        break
                    }
                }
            }
            wait = max(wait, max(1, w))
        }
        self.events.removeAll { $0.time <= now - longest }
        if wait > 0 { return wait }
        if let token { self.events.append(Event(time: now, weight: weight, token: token)) }
        return 0
    }
}

/// Rate limits kept in this process's memory while Redis cannot be reached
/// (one per process, shared by every limiter of it).
public final class LocalRateLimits: Sendable {
    private struct State {
        var windows: [String: (window: SlidingWindow, expires: Int64)] = [:]
        var operations = 0
    }

    private let state = Mutex(State())
    let fallbacks = Counter(label: "parley_rate_limit_fallbacks_total")

    public init() {}

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func run(_ key: String, _ rules: [RateLimitRule], token: String?, weight: Int) -> Int64 {
        let now = Self.now()
        let longest = rules.map(\.windowMilliseconds).max() ?? 0
        return self.state.withLock { state in
            state.operations += 1
            // now and then, forget subjects whose events have all expired
            if state.operations % 1024 == 0 { state.windows = state.windows.filter { $0.value.expires > now } }
            var entry = state.windows[key] ?? (SlidingWindow(), 0)
            let wait = entry.window.decide(now: now, rules: rules, token: token, weight: weight)
            entry.expires = max(entry.expires, now + longest)
            state.windows[key] = entry
            return wait
        }
    }

    func giveBack(_ key: String, token: String) {
        self.state.withLock { state in state.windows[key]?.window.events.removeAll { $0.token == token } }
    }
}
