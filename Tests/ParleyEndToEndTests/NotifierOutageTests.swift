import Foundation
import HiredisNIO
import ParleyTestSupport
import Testing

/// The notifier when PostgreSQL is down: what it cannot handle stays pending
/// in the stream, and once PostgreSQL is back it is handled, once. A private
/// PostgreSQL and Redis, so that crashing them and the notifier's consumer
/// group touch no other test.
@Suite struct NotifierOutageTests {
    @Test func aMessageReadWhilePostgreSQLIsDownIsPushedOnceItIsBack() async throws {
        let postgres = try PostgresServerProcess()
        try await postgres.create()
        let redisServer = try RedisServerProcess()
        try await redisServer.start()
        let redis = RedisClient(configuration: try redisServer.configuration, logger: TestEnvironment.logger)
        defer { Task { await redis.shutdown() } }
        let gateway = try GatewayProcess(
            databaseURL: postgres.url, redisURL: redisServer.url, environment: PushNotificationTests.environment, arguments: ["--no-migrate"]
        )
        try await gateway.waitUntilReady()
        let environment = PushNotificationTests.environment.merging(["PARLEY_DATABASE_URL": postgres.url, "PARLEY_REDIS_URL": redisServer.url]) { $1 }
        @Sendable func pending() async throws -> Int64? { try? await redis.xpendingCount("events:messages", group: "push") }
        let first = try MailerProcess(retryMilliseconds: 1000, environment: environment)
        try await eventually(timeout: .seconds(30)) { try await pending() != nil }  // its push group exists

        let alice = try await E2EUser.register(on: gateway, name: "Alice")
        let bob = try await E2EUser.register(on: gateway, name: "Bob")
        var device = try await PushNotificationTests.Subscription.make()
        try await device.register(bob, on: gateway)
        let chat = try await alice.group(on: gateway, members: [bob])

        // no notifier while a message goes out; then PostgreSQL crashes
        first.child.signal(SIGKILL)
        _ = await first.child.waitForExit()
        let seq = try await PushNotificationTests.send(alice, chat, "while you were out", on: gateway)
        try await postgres.crash()

        // a notifier starting now reads the event but cannot find out whom it notifies
        let notifier = try MailerProcess(retryMilliseconds: 1000, environment: environment)
        try await eventually(timeout: .seconds(30)) { notifier.child.outputText.contains("could not queue the jobs of these events") }
        let stillPending = try await pending() ?? 0
        #expect(stillPending >= 1, "the message's event (with any read with it) stays pending: \(stillPending)")
        #expect(try await device.received().isEmpty)

        // PostgreSQL back: the event is claimed again and pushed, once
        try await postgres.start()
        let pushes = try await device.wait(for: 1, timeout: .seconds(30))
        #expect((pushes.first?["payload"] as? [String: Any])?["seq"] as? Int == seq)
        try await eventually(timeout: .seconds(30)) { try await pending() == 0 }
        #expect(try await device.received().count == 1, "pushed once")
        #expect(notifier.child.isRunning, "the notifier rode the outage out")
    }
}
