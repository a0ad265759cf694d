import Foundation
import HiredisNIO
import ParleyChat
import ParleyCore
import ParleyTestSupport
import Synchronization
import Testing

@testable import ParleyGateway

/// The hub's Redis subscriptions against the real Redis: many sockets
/// registering at once share a few subscription passes, and the channels
/// subscribed are exactly those some local socket needs.
@Suite struct ConnectionHubTests {
    @Test func aThousandRegistrationsShareAFewPassesAndLeaveExactlyTheChannelsNeeded() async throws {
        let subscriber = RedisSubscriber(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let hub = ConnectionHub(subscriber: subscriber, logger: TestEnvironment.logger)
        let running = Task { try await subscriber.run() }
        let passes = Task { await hub.subscriptions.run() }
        defer {
            hub.subscriptions.finish()
            running.cancel()
            passes.cancel()
        }
        try await withDeadline(.seconds(10)) { while !subscriber.isConnected { try await Task.sleep(for: .milliseconds(20)) } }
        let chats = (0..<50).map { _ in UUID() }
        let connections = (0..<1000).map { index in
            Connection(
                userID: UUID(), sessionID: UUID(), expiresAt: .distantFuture, chats: [chats[index % 50], chats[(index + 1) % 50]], queueLimit: 10,
                socket: SocketClose { _, _ in }
            )
        }
        try await withThrowingDiscardingTaskGroup { group in
            for connection in connections { group.addTask { await hub.register(connection) } }
        }
        let expected = Set(chats.map(ChatEventPublisher.channel) + connections.map { ChatEventPublisher.userChannel($0.userID) } + ConnectionHub.fixedChannels)
        #expect(subscriber.channels == expected)
        let afterRegistering = hub.subscriptions.passes.load(ordering: .relaxed)
        #expect(afterRegistering < 100, "\(afterRegistering) passes for 1,000 registrations")

        // a user joins a chat on one socket; then half the sockets go
        let newChat = UUID()
        #expect(await hub.addChat(newChat, forUser: connections[0].userID).count == 1)
        #expect(subscriber.channels.contains(ChatEventPublisher.channel(newChat)))
        try await withThrowingDiscardingTaskGroup { group in
            for connection in connections.prefix(500) { group.addTask { await hub.unregister(connection) } }
        }
        let remaining = connections.suffix(500)
        let still = Set(remaining.flatMap { $0.chats.map(ChatEventPublisher.channel) } + remaining.map { ChatEventPublisher.userChannel($0.userID) } + ConnectionHub.fixedChannels)
        #expect(subscriber.channels == still, "the new chat and the users who left are unsubscribed")
        // and Redis agrees: one listener on a remaining chat, none on a user who left
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let reply = try await redis.send("PUBSUB", "NUMSUB", .string(ChatEventPublisher.channel(chats[2])), .string(ChatEventPublisher.userChannel(connections[0].userID))).array ?? []
        #expect(reply.count == 4 && reply[1].int == 1 && reply[3].int == 0, "\(reply)")
        await redis.shutdown()
    }
}

extension ConnectionHubTests {
    /// A service group cancels its services when one fails (a port already
    /// taken): the subscription passes must end then, and nobody may wait.
    @Test func cancellingThePassesEndsThemAndNobodyWaits() async throws {
        let subscriber = RedisSubscriber(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let hub = ConnectionHub(subscriber: subscriber, logger: TestEnvironment.logger)
        let passes = Task { await hub.subscriptions.run() }
        let waiting = Task { await hub.subscriptions.sync() }  // nothing connected: never answered by a pass
        passes.cancel()
        try await withDeadline(.seconds(10)) {
            await passes.value
            await waiting.value
            await hub.subscriptions.sync()  // after the end: at once
        }
    }
}
