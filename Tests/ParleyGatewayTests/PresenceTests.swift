import Foundation
import HiredisNIO
import NIOCore
import ParleyCore
import ParleyTestSupport
import Testing

@testable import ParleyGateway

@Suite struct PresenceTests {
    static func redis(cluster: Bool) throws -> RedisConfiguration {
        cluster ? try TestEnvironment.redisClusterConfiguration() : try TestEnvironment.redisConfiguration()
    }

    @Test(arguments: [false, true])
    func heartbeatsBringBackUsersWhoseEntriesWereLost(cluster: Bool) async throws {
        let dependencies = try await GatewayTestSupport.dependencies(redis: try Self.redis(cluster: cluster))
        let presence = dependencies.realtime.presence
        let user = UUID()
        let connection = Connection(userID: user, sessionID: UUID(), expiresAt: .distantFuture, chats: [], queueLimit: 10, socket: SocketClose { _, _ in })
        #expect(try await presence.admit(userID: user, connectionID: connection.id, limit: 20) == .admitted(first: true))
        #expect(try await presence.heartbeat([connection]).isEmpty, "a refresh of a live entry changes nothing")
        // Redis lost the entry (a restart, or a sweep after a long outage)
        _ = try await dependencies.redis.del([PresenceKeys.user(user, cluster: dependencies.redis.configuration.isCluster)])
        #expect(try await presence.online([user]).isEmpty)
        #expect(try await presence.heartbeat([connection]) == [user], "the next heartbeat brings the user back online")
        #expect(try await presence.online([user]) == [user])
        #expect(try await presence.disconnected(userID: user, connectionID: connection.id))
        await dependencies.redis.shutdown()
    }

    @Test func theConnectionLimitHoldsUnderRacingConnects() async throws {
        let dependencies = try await GatewayTestSupport.dependencies()
        let presence = dependencies.realtime.presence
        let user = UUID()
        // 12 connects at once (as from several instances) against a limit of 3
        let admissions = await withTaskGroup(of: Presence.Admission?.self) { group in
            for _ in 0..<12 { group.addTask { try? await presence.admit(userID: user, connectionID: UUID(), limit: 3) } }
            return await group.reduce(into: [Presence.Admission?]()) { $0.append($1) }
        }
        #expect(admissions.filter { if case .admitted = $0 { true } else { false } }.count == 3)
        #expect(admissions.filter { $0 == .admitted(first: true) }.count == 1)
        #expect(admissions.filter { $0 == .refused }.count == 9)
        _ = try await dependencies.redis.del([PresenceKeys.user(user, cluster: dependencies.redis.configuration.isCluster)])
        await dependencies.redis.shutdown()
    }

    /// Connections nobody refreshes expire and are swept, in every group
    /// (in a cluster the groups live on different masters). Expiry is made
    /// deterministic by moving the connections' expiry times in the index
    /// into the past (what the passing of the ttl does), so a slow machine
    /// cannot expire them before they are checked. The server is shared with
    /// other suites whose gateways sweep too, so the test waits for the
    /// entries to leave every group's index, not for its own sweep to be the
    /// one that reports them.
    @Test(arguments: [false, true])
    func expiredConnectionsAreSweptInEveryGroup(cluster: Bool) async throws {
        let dependencies = try await GatewayTestSupport.dependencies(redis: try Self.redis(cluster: cluster))
        let redis = dependencies.redis
        let presence = dependencies.realtime.presence
        // a user in every group of this mode
        var users: [Int: (user: UUID, connection: UUID)] = [:]
        while users.count < PresenceKeys.buckets(cluster: cluster) {
            let user = UUID()
            users[PresenceKeys.bucket(user, cluster: cluster)] = (user, UUID())
        }
        let ids = users.values.map(\.user)
        func entry(_ bucket: Int) -> (index: String, member: String) {
            let (user, connection) = users[bucket]!
            return (PresenceKeys.index(bucket: bucket, cluster: cluster), "\(user.lowercased)|\(connection.lowercased)")
        }
        func indexed() async throws -> Int {
            var count = 0
            for bucket in users.keys where !(try await redis.send(RedisCommand("ZSCORE", [.string(entry(bucket).index), .string(entry(bucket).member)]))).isNull {
                count += 1
            }
            return count
        }
        for (user, connection) in users.values {
            #expect(try await presence.admit(userID: user, connectionID: connection, limit: 3) == .admitted(first: true))
        }
        #expect(Set(try await presence.online(ids)) == Set(ids))
        #expect(try await indexed() == users.count, "each connection is in its group's index")
        #expect(try await presence.sweep().filter(Set(ids).contains).isEmpty, "a live connection is not swept")
        #expect(try await indexed() == users.count)
        // their time passes: every entry's expiry is now in the past
        for bucket in users.keys {
            _ = try await redis.send(RedisCommand("ZADD", [.string(entry(bucket).index), "XX", "1", .string(entry(bucket).member)]))
        }
        var left = users.count
        let deadline = ContinuousClock.now + .seconds(15)
        while left > 0, ContinuousClock.now < deadline {
            _ = try await presence.sweep()
            left = try await indexed()
            if left > 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(left == 0, "an expired connection stays in no group")
        #expect(try await presence.online(ids).isEmpty, "and its user is offline")
        await redis.shutdown()
    }

    /// A group that fails (its master failing over) does not cost the others their answers.
    @Test func aFailedGroupLeavesTheOthersTheirAnswers() async throws {
        let (a, b) = (UUID(), UUID())
        let some = try await Presence.eachGroup([0, 1, 2]) { bucket in
            switch bucket {
            case 0: .array([.bulkString(.init(string: a.uuidString))])
            case 1: throw RedisError(.connectionRefused, "failing over")
            default: .array([.bulkString(.init(string: b.uuidString))])
            }
        }
        #expect(Set(some) == [a, b])
        await #expect(throws: RedisError.self) {
            _ = try await Presence.eachGroup([0, 1]) { _ in throw RedisError(.connectionRefused, "down") }
        }
        #expect(try await Presence.eachGroup([]) { _ in throw RedisError(.connectionRefused, "never called") }.isEmpty)
    }

    @Test func withoutRedisNoConnectionIsAdmitted() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let dependencies = try await GatewayTestSupport.dependencies(redis: try redis.configuration)
        await redis.kill()
        await #expect(throws: RedisError.self) {
            try await dependencies.realtime.presence.admit(userID: UUID(), connectionID: UUID(), limit: 3)
        }
        await dependencies.redis.shutdown()
    }
}
