import Foundation
import HiredisNIO
import NIOCore
import ParleyTestSupport
import Testing

/// Against the redis-server that scripts/test started (with a password, so AUTH is exercised).
@Suite struct RedisClientIntegrationTests {
    let client: RedisClient
    let prefix = "test:\(UUID().uuidString.prefix(8)):"

    init() throws {
        self.client = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
    }

    @Test func tenThousandPipelinedCommandsReturnInOrder() async throws {
        let connection = try await self.client.connection()
        let key = self.prefix + "counter"
        let replies = try await connection.pipeline((0..<10_000).map { _ in RedisCommand("INCR", [.string(key)]) })
        #expect(replies.count == 10_000)
        #expect(replies == (1...10_000).map { RedisValue.integer(Int64($0)) })
        // and 10,000 concurrent single sends over the pooled, pipelined connections
        let results = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<10_000 {
                group.addTask { (i, try await self.client.send("ECHO", .string("v\(i)")).string) }
            }
            return try await group.reduce(into: [Int: String?]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 10_000)
        #expect(results.allSatisfy { $0.value == "v\($0.key)" })
    }

    @Test func binaryPayloadsRoundTrip() async throws {
        let key = self.prefix + "binary"
        let payload: [UInt8] = Array(0...255) + [0x0D, 0x0A, 0x24, 0x2A, 0x00] + Array("ünïcødé 👋".utf8)
        try await self.client.set(key, to: RedisArgument(payload), expireSeconds: 60)
        let value = try await self.client.get(key)
        #expect(value.map { Array($0.readableBytesView) } == payload)
        let big = [UInt8](repeating: 0xAB, count: 2 * 1024 * 1024)
        try await self.client.set(key, to: RedisArgument(big), expireSeconds: 60)
        #expect(try await self.client.get(key)?.readableBytes == big.count)
    }

    @Test func stringHelpers() async throws {
        let key = self.prefix + "s"
        #expect(try await self.client.set(key, to: "a", expireSeconds: 60, onlyIfAbsent: true))
        #expect(try await self.client.set(key, to: "b", onlyIfAbsent: true) == false)
        #expect(try await self.client.get(key).map { String(buffer: $0) } == "a")
        #expect(try await self.client.getdel(key).map { String(buffer: $0) } == "a")
        #expect(try await self.client.getdel(key) == nil)
        #expect(try await self.client.incr(key) == 1)
        #expect(try await self.client.expire(key, seconds: 30))
        #expect(try await self.client.del([key]) == 1)
        #expect(try await self.client.exists(key) == false)
    }

    @Test func hashesAndSortedSets() async throws {
        let hash = self.prefix + "h"
        try await self.client.hset(hash, [("a", "1"), ("b", "2")])
        #expect(try await self.client.hget(hash, "b").map { String(buffer: $0) } == "2")
        #expect(try await self.client.hgetall(hash).mapValues { String(buffer: $0) } == ["a": "1", "b": "2"])
        #expect(try await self.client.hdel(hash, ["a"]) == 1)
        let zset = self.prefix + "z"
        try await self.client.zadd(zset, [(1, "one"), (2, "two"), (3, "three")])
        #expect(try await self.client.zrangeByScore(zset, min: "2", max: "+inf") == ["two", "three"])
        #expect(try await self.client.zremRangeByScore(zset, min: "-inf", max: "1") == 1)
        #expect(try await self.client.zrem(zset, ["two"]) == 1)
        #expect(try await self.client.zcard(zset) == 1)
        try await self.client.del([hash, zset])
    }

    @Test func errorRepliesAreTypedErrors() async throws {
        let key = self.prefix + "list"
        _ = try await self.client.send("LPUSH", .string(key), "x")
        await #expect {
            _ = try await self.client.incr(key)
        } throws: { error in
            let error = error as? RedisError
            return error?.code == .serverError && error?.serverErrorPrefix == "WRONGTYPE"
        }
        // the connection is still usable after an error reply
        #expect(try await self.client.del([key]) == 1)
    }

    @Test func scriptsReloadAfterNOSCRIPT() async throws {
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let key = self.prefix + "script"
        #expect(try await self.client.evalsha(script, keys: [key], arguments: [5]).int == 5)
        _ = try await self.client.send("SCRIPT", "FLUSH")
        #expect(try await self.client.evalsha(script, keys: [key], arguments: [2]).int == 7)
        try await self.client.del([key])
    }

    @Test func streamConsumedByAGroupBehavesAsDocumented() async throws {
        let stream = self.prefix + "stream"
        let group = "workers"
        #expect(try await self.client.xgroupCreate(stream, group: group, startID: "0"))
        #expect(try await self.client.xgroupCreate(stream, group: group, startID: "0") == false)  // BUSYGROUP
        var ids: [String] = []
        for i in 0..<5 {
            ids.append(try await self.client.xadd(stream, maxLength: 1000, fields: [("n", RedisArgument(i)), ("bin", RedisArgument([0, 13, 10]))]))
        }
        #expect(try await self.client.xlen(stream) == 5)

        try await self.client.withDedicatedConnection { connection in
            // consumer a reads three, acknowledges one
            let first = try await connection.xreadgroup(stream, group: group, consumer: "a", count: 3, blockMilliseconds: 100)
            #expect(first.map(\.id) == Array(ids.prefix(3)))
            #expect(first.map { $0["n"] } == ["0", "1", "2"])
            #expect(first.first?.fields["bin"].map { Array($0.readableBytesView) } == [0, 13, 10])
            #expect(try await self.client.xack(stream, group: group, ids: [ids[0]]) == 1)
            #expect(try await self.client.xpendingCount(stream, group: group) == 2)
            let pending = try await self.client.xpending(stream, group: group, count: 10)
            #expect(pending.map(\.id) == [ids[1], ids[2]])
            #expect(pending.allSatisfy { $0.consumer == "a" && $0.deliveries == 1 })

            // "0" re-reads a's own pending entries (what a restarted worker does)
            let own = try await connection.xreadgroup(stream, group: group, consumer: "a", id: "0", count: 10)
            #expect(own.map(\.id) == [ids[1], ids[2]])

            // consumer b claims what a left idle
            try await Task.sleep(for: .milliseconds(30))
            let claimed = try await self.client.xautoclaim(stream, group: group, consumer: "b", minIdleMilliseconds: 20)
            #expect(claimed.entries.map(\.id) == [ids[1], ids[2]])
            #expect(claimed.next == "0-0")
            let afterClaim = try await self.client.xpending(stream, group: group, count: 10)
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
        try await self.client.del([stream])
    }

    @Test func wrongPasswordIsAClearError() async throws {
        var configuration = try TestEnvironment.redisConfiguration()
        configuration.password = "wrong-password"
        await #expect {
            _ = try await RedisConnection.connect(configuration: configuration, logger: TestEnvironment.logger)
        } throws: { error in
            let error = error as? RedisError
            return error?.code == .serverError && (error?.message.contains("WRONGPASS") ?? false)
        }
    }

    @Test func selectsTheDatabaseOfTheURL() async throws {
        var configuration = try TestEnvironment.redisConfiguration()
        configuration.database = 5
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let key = self.prefix + "db"
        try await client.set(key, to: "five", expireSeconds: 60)
        #expect(try await self.client.get(key) == nil)
        #expect(try await client.get(key).map { String(buffer: $0) } == "five")
        try await client.del([key])
        await client.shutdown()
    }
}
