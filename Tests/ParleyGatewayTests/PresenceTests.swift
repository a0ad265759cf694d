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
        #expect(try await presence.connected(userID: user, connectionID: connection.id))
        #expect(try await presence.heartbeat([connection]).isEmpty, "a refresh of a live entry changes nothing")
        // Redis lost the entry (a restart, or a sweep after a long outage)
        _ = try await dependencies.redis.del([PresenceKeys.user(user)])
        #expect(try await presence.online([user]).isEmpty)
        #expect(try await presence.heartbeat([connection]) == [user], "the next heartbeat brings the user back online")
        #expect(try await presence.online([user]) == [user])
        #expect(try await presence.disconnected(userID: user, connectionID: connection.id))
        await dependencies.redis.shutdown()
    }
}
