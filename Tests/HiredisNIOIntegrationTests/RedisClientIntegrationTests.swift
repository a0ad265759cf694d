import Foundation
import HiredisNIO
import NIOCore
import ParleyTestSupport
import Testing

/// Where a test runs: the redis-server that scripts/test started, or its
/// Redis Cluster (both with a password, so AUTH is exercised).
enum RedisMode: String, CaseIterable, Sendable {
    case single, cluster

    var configuration: RedisConfiguration {
        get throws { self == .cluster ? try TestEnvironment.redisClusterConfiguration() : try TestEnvironment.redisConfiguration() }
    }
}

/// The same commands against one Redis and against a cluster.
@Suite struct RedisClientIntegrationTests {
    /// One hash tag per test: its keys share a slot, so multi-key commands work on a cluster too.
    let prefix = "test:{\(UUID().uuidString.prefix(8))}:"

    func client(_ mode: RedisMode) throws -> RedisClient {
        RedisClient(configuration: try mode.configuration, logger: TestEnvironment.logger)
    }

    @Test(arguments: RedisMode.allCases)
    func tenThousandPipelinedCommandsReturnInOrder(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let key = self.prefix + "counter"
        let connection = try await client.connection(forKey: key)
        let replies = try await connection.pipeline((0..<10_000).map { _ in RedisCommand("INCR", [.string(key)]) })
        #expect(replies.count == 10_000)
        #expect(replies == (1...10_000).map { RedisValue.integer(Int64($0)) })
        // and 10,000 concurrent single sends over the pooled, pipelined connections
        let results = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<10_000 {
                group.addTask { (i, try await client.send("ECHO", .string("v\(i)")).string) }
            }
            return try await group.reduce(into: [Int: String?]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 10_000)
        #expect(results.allSatisfy { $0.value == "v\($0.key)" })
    }

    @Test(arguments: RedisMode.allCases)
    func binaryPayloadsRoundTrip(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let key = self.prefix + "binary"
        let payload: [UInt8] = Array(0...255) + [0x0D, 0x0A, 0x24, 0x2A, 0x00] + Array("ünïcødé 👋".utf8)
        try await client.set(key, to: RedisArgument(payload), expireSeconds: 60)
        let value = try await client.get(key)
        #expect(value.map { Array($0.readableBytesView) } == payload)
        let big = [UInt8](repeating: 0xAB, count: 2 * 1024 * 1024)
        try await client.set(key, to: RedisArgument(big), expireSeconds: 60)
        #expect(try await client.get(key)?.readableBytes == big.count)
    }

    @Test(arguments: RedisMode.allCases)
    func stringHelpers(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let key = self.prefix + "s"
        #expect(try await client.set(key, to: "a", expireSeconds: 60, onlyIfAbsent: true))
        #expect(try await client.set(key, to: "b", onlyIfAbsent: true) == false)
        #expect(try await client.get(key).map { String(buffer: $0) } == "a")
        #expect(try await client.getdel(key).map { String(buffer: $0) } == "a")
        #expect(try await client.getdel(key) == nil)
        #expect(try await client.incr(key) == 1)
        #expect(try await client.expire(key, seconds: 30))
        #expect(try await client.del([key]) == 1)
        #expect(try await client.exists(key) == false)
    }

    @Test(arguments: RedisMode.allCases)
    func hashesAndSortedSets(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let hash = self.prefix + "h"
        try await client.hset(hash, [("a", "1"), ("b", "2")])
        #expect(try await client.hget(hash, "b").map { String(buffer: $0) } == "2")
        #expect(try await client.hgetall(hash).mapValues { String(buffer: $0) } == ["a": "1", "b": "2"])
        #expect(try await client.hdel(hash, ["a"]) == 1)
        let zset = self.prefix + "z"
        try await client.zadd(zset, [(1, "one"), (2, "two"), (3, "three")])
        #expect(try await client.zrangeByScore(zset, min: "2", max: "+inf") == ["two", "three"])
        #expect(try await client.zremRangeByScore(zset, min: "-inf", max: "1") == 1)
        #expect(try await client.zrem(zset, ["two"]) == 1)
        #expect(try await client.zcard(zset) == 1)
        try await client.del([hash, zset])
    }

    @Test(arguments: RedisMode.allCases)
    func errorRepliesAreTypedErrors(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let key = self.prefix + "list"
        _ = try await client.send("LPUSH", .string(key), "x")
        await #expect {
            _ = try await client.incr(key)
        } throws: { error in
            let error = error as? RedisError
            return error?.code == .serverError && error?.serverErrorPrefix == "WRONGTYPE"
        }
        // the connection is still usable after an error reply
        #expect(try await client.del([key]) == 1)
    }

    @Test(arguments: RedisMode.allCases)
    func scriptsReloadAfterNOSCRIPT(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let key = self.prefix + "script"
        #expect(try await client.evalsha(script, keys: [key], arguments: [5]).int == 5)
        _ = try await client.send("SCRIPT", "FLUSH")
        #expect(try await client.evalsha(script, keys: [key], arguments: [2]).int == 7)
        try await client.del([key])
    }

    @Test(arguments: RedisMode.allCases)
    func streamConsumedByAGroupBehavesAsDocumented(mode: RedisMode) async throws {
        let client = try self.client(mode)
        let stream = self.prefix + "stream"
        let group = "workers"
        #expect(try await client.xgroupCreate(stream, group: group, startID: "0"))
        #expect(try await client.xgroupCreate(stream, group: group, startID: "0") == false)  // BUSYGROUP
        var ids: [String] = []
        for i in 0..<5 {
            ids.append(try await client.xadd(stream, maxLength: 1000, fields: [("n", RedisArgument(i)), ("bin", RedisArgument([0, 13, 10]))]))
        }
        #expect(try await client.xlen(stream) == 5)

        try await client.withDedicatedConnection(forKey: stream) { connection in
            // consumer a reads three, acknowledges one
            let first = try await connection.xreadgroup(stream, group: group, consumer: "a", count: 3, blockMilliseconds: 100)
            #expect(first.map(\.id) == Array(ids.prefix(3)))
            #expect(first.map { $0["n"] } == ["0", "1", "2"])
            #expect(first.first?.fields["bin"].map { Array($0.readableBytesView) } == [0, 13, 10])
            #expect(try await client.xack(stream, group: group, ids: [ids[0]]) == 1)
            #expect(try await client.xpendingCount(stream, group: group) == 2)
            let pending = try await client.xpending(stream, group: group, count: 10)
            #expect(pending.map(\.id) == [ids[1], ids[2]])
            #expect(pending.allSatisfy { $0.consumer == "a" && $0.deliveries == 1 })

            // "0" re-reads a's own pending entries (what a restarted worker does)
            let own = try await connection.xreadgroup(stream, group: group, consumer: "a", id: "0", count: 10)
            #expect(own.map(\.id) == [ids[1], ids[2]])

            // consumer b claims what a left idle
            try await Task.sleep(for: .milliseconds(30))
            let claimed = try await client.xautoclaim(stream, group: group, consumer: "b", minIdleMilliseconds: 20)
            #expect(claimed.entries.map(\.id) == [ids[1], ids[2]])
            #expect(claimed.next == "0-0")
            let afterClaim = try await client.xpending(stream, group: group, count: 10)
            #expect(afterClaim.allSatisfy { $0.consumer == "b" && $0.deliveries >= 2 })

            // b reads the rest; a blocking read on an empty stream returns nothing after the timeout
            let rest = try await connection.xreadgroup(stream, group: group, consumer: "b", count: 10, blockMilliseconds: 100)
            #expect(rest.map(\.id) == Array(ids.suffix(2)))
            let clock = ContinuousClock()
            let started = clock.now
            let none = try await connection.xreadgroup(stream, group: group, consumer: "b", count: 10, blockMilliseconds: 200)
            #expect(none.isEmpty)
            #expect(clock.now - started >= .milliseconds(150))
        }
        try await client.del([stream])
    }

    @Test(arguments: RedisMode.allCases)
    func wrongPasswordIsAClearError(mode: RedisMode) async throws {
        var configuration = try mode.configuration
        configuration.password = "wrong-password"
        await #expect {
            _ = try await RedisConnection.connect(configuration: configuration, logger: TestEnvironment.logger)
        } throws: { error in
            let error = error as? RedisError
            return error?.code == .serverError && (error?.message.contains("WRONGPASS") ?? false)
        }
    }

    /// One Redis only: a cluster has database 0 alone (a URL naming another is refused).
    @Test func selectsTheDatabaseOfTheURL() async throws {
        let single = try self.client(.single)
        var configuration = try TestEnvironment.redisConfiguration()
        configuration.database = 5
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let key = self.prefix + "db"
        try await client.set(key, to: "five", expireSeconds: 60)
        #expect(try await single.get(key) == nil)
        #expect(try await client.get(key).map { String(buffer: $0) } == "five")
        try await client.del([key])
        await client.shutdown()
    }
}
