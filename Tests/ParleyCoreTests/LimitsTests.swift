import Foundation
import HiredisNIO
import Logging
import NIOPosix
import ParleyTestSupport
import Synchronization
import Testing

@testable import ParleyCore

/// The sliding window (pure), and the limiter against the real Redis and without it.
@Suite struct SlidingWindowTests {
    @Test func weightedEventsAndTheWaitUntilOneFits() {
        var window = SlidingWindow()
        let rules = [RateLimitRule(100, per: .seconds(10))]
        #expect(window.decide(now: 1_000, rules: rules, token: "a", weight: 60) == 0)
        #expect(window.decide(now: 2_000, rules: rules, token: "b", weight: 30) == 0)
        // 90 used: 20 more must wait until the first event (60) leaves the window at 11,000
        #expect(window.decide(now: 3_000, rules: rules, token: "c", weight: 20) == 8_000)
        #expect(window.decide(now: 3_000, rules: rules, token: "d", weight: 10) == 0, "10 still fits")
        // heavier than the whole limit: never fits, wait a whole window
        #expect(window.decide(now: 3_000, rules: rules, token: "e", weight: 101) == 10_000)
        // after the first event left, 20 fit
        #expect(window.decide(now: 11_001, rules: rules, token: "f", weight: 20) == 0)
    }

    @Test func checkingCountsNothingAndTheLongestRuleBinds() {
        var window = SlidingWindow()
        let rules = [RateLimitRule(2, per: .seconds(1)), RateLimitRule(3, per: .seconds(60))]
        #expect(window.decide(now: 0, rules: rules, token: nil, weight: 1) == 0)
        #expect(window.events.isEmpty)
        for t in [0, 10] { #expect(window.decide(now: Int64(t), rules: rules, token: "\(t)", weight: 1) == 0) }
        #expect(window.decide(now: 20, rules: rules, token: "x", weight: 1) == 980)
        #expect(window.decide(now: 2_000, rules: rules, token: "y", weight: 1) == 0)
        #expect(window.decide(now: 3_000, rules: rules, token: "z", weight: 1) == 57_000, "the minute rule: 3 used since t=0")
    }
}

@Suite struct ClientAddressTests {
    @Test(arguments: [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99", "2001:db8:1:2::/64"),
        ("2001:DB8:0001:0002:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", "unknown"),
    ])
    func limitsCountAnIPv6AddressByItsSlash64(address: String, key: String) {
        #expect(ClientAddress.limitKey(address) == key)
    }
}

@Suite struct PasswordRulesTests {
    @Test func guessablePasswordsAreRefused() throws {
        let strength = PasswordStrength()
        try strength.validate()
        for weak in ["password", "password123", "hunter22", "qwertyuiop", "12345678", "abcdefgh"] {
            #expect(try strength.problem(weak) != nil, "\(weak) is accepted")
        }
        for fine in ["correct horse battery", "long enough pw", "Tr0ub4dor&3", "zebra crossing 9"] {
            #expect(try strength.problem(fine) == nil, "\(fine) is refused")
        }
        #expect(throws: ConfigurationError.self) { try PasswordStrength(dictionary: "/nonexistent/dict").validate() }
        #expect(throws: PasswordStrength.Unavailable.self) { try PasswordStrength(dictionary: "/nonexistent/dict").problem("x") }
    }

    @Test func aFullHashingQueueRefusesAtOnce() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let hasher = PasswordHasher(pool: pool, maxPending: 3)
        let outcomes = await withTaskGroup(of: Result<Bool, any Error>.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    do { return .success(try await hasher.verify("correct horse battery", against: nil)) } catch { return .failure(error) }
                }
            }
            return await group.reduce(into: [Result<Bool, any Error>]()) { $0.append($1) }
        }
        let busy = outcomes.filter { if case .failure(let error) = $0 { error is PasswordHasher.Busy } else { false } }.count
        #expect(busy >= 14, "at most 3 of 20 are admitted at once (\(busy) refused)")
        #expect(busy < 20, "some are admitted")
        #expect(hasher.verifications == 20 - busy)
        try await pool.shutdownGracefully()
    }
}

@Suite struct RateLimiterFallbackTests {
    @Test func weightsAreCountedInRedis() async throws {
        let limiter = RateLimiter(redis: RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger))
        let key = "test:bytes:\(UUID().uuidString)"
        let rules = [RateLimitRule(1000, per: .seconds(60))]
        let started = ContinuousClock.now
        #expect(try await limiter.hit(key, rules, weight: 700) == .allowed)
        #expect(try await limiter.check(key, rules, weight: 300) == .allowed)
        #expect(try await limiter.hit(key, rules, weight: 301) != .allowed)
        #expect(try await limiter.hit(key, rules, weight: 300) == .allowed)
        guard case .limited(let retryAfter) = try await limiter.hit(key, rules, weight: 1) else {
            Issue.record("the window is full")
            return
        }
        // the window opened with the first hit: what is left of it (a starved
        // machine has taken over 10 s for these five calls)
        let elapsed = Int((ContinuousClock.now - started).components.seconds) + 1
        #expect((max(0, 55 - elapsed)...60).contains(retryAfter), "retry after \(retryAfter) s, \(elapsed) s after the first hit")
    }

    @Test func withoutRedisLimitsHoldInThisProcess() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let client = RedisClient(configuration: try redis.configuration, logger: TestEnvironment.logger)
        let limiter = RateLimiter(redis: client)
        let rules = [RateLimitRule(3, per: .seconds(60))]
        let key = "test:\(UUID().uuidString)"
        #expect(try await limiter.hit(key, rules) == .allowed)
        await redis.kill()
        // Redis is gone: the same limits, counted in memory from now on
        #expect(try await limiter.hit(key, rules) == .allowed)
        #expect(try await limiter.hit(key, rules) == .allowed)
        #expect(try await limiter.hit(key, rules) == .allowed)
        #expect(try await limiter.hit(key, rules) != .allowed)
        let token = UUID().uuidString
        #expect(try await limiter.reserve("other:\(key)", rules, token: token) == .allowed)
        try await limiter.giveBack("other:\(key)", token: token)
        for _ in 0..<3 { #expect(try await limiter.reserve("other:\(key)", rules, token: UUID().uuidString) == .allowed) }
        #expect(try await limiter.reserve("other:\(key)", rules, token: UUID().uuidString) != .allowed, "a slot given back is free again")
        await client.shutdown()
    }
}

@Suite struct JSONLogTests {
    @Test func eachEventIsOneJSONObjectOnOneLine() throws {
        let lines = Mutex<[Data]>([])
        var logger = Logger(label: "parley.test") { label in JSONLogHandler(label: label) { data in lines.withLock { $0.append(data) } } }
        logger[metadataKey: "instance.id"] = "gw-1"
        logger.info("hello \"world\"\nsecond line", metadata: ["user.id": "u1", "nested": ["a": "1", "list": ["x", "y"]]])
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let data = try #require(written.first)
        #expect(data.last == 0x0A && data.dropLast().firstIndex(of: 0x0A) == nil, "exactly one line")
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "parley.test")
        #expect(object["message"] as? String == "hello \"world\"\nsecond line")
        #expect((object["timestamp"] as? String)?.hasSuffix("Z") == true)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["instance.id"] as? String == "gw-1")
        #expect(metadata["user.id"] as? String == "u1")
        #expect((metadata["nested"] as? [String: Any])?["list"] as? [String] == ["x", "y"])
    }
}
