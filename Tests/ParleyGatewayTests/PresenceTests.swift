import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import Testing

@testable import ParleyGateway

@Suite struct PresenceTests {
    @Test func heartbeatsBringBackUsersWhoseEntriesWereLost() async throws {
        let dependencies = try await GatewayTestSupport.dependencies()
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
