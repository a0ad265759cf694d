import Foundation
import HiredisNIO
import NIOCore
import ParleyTestSupport
import Testing

/// Fault tests on a private redis-server that the test kills and restarts.
@Suite struct RedisFaultTests {
    @Test func commandsFailFastWhileRedisIsDownAndWorkAgainAfter() async throws {
        let server = try RedisServerProcess(password: "fault-secret")
        try await server.start()
        let client = RedisClient(configuration: try server.configuration, logger: TestEnvironment.logger)
        try await client.set("k", to: "v")
        #expect(try await client.get("k").map { String(buffer: $0) } == "v")

        await server.kill()
        let clock = ContinuousClock()
        for _ in 0..<3 {
            let started = clock.now
            await #expect {
                _ = try await client.get("k")
            } throws: { error in
                let code = (error as? RedisError)?.code
                return code == .connectionClosed || code == .connectionRefused
            }
            // fast means well under the client's command timeout (a hang would take that long);
            // 1 s was too tight on a machine running the whole suite in parallel (1.31 s seen)
            #expect(clock.now - started < .seconds(3), "a command against a dead Redis must fail fast")
        }

        try await server.start()
        try await client.set("k", to: "back")
        #expect(try await client.get("k").map { String(buffer: $0) } == "back")
        await client.shutdown()
        await server.stop()
    }

    @Test func aCommandToAPortNobodyListensOnFailsAtOnce() async throws {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: try TestEnvironment.freePort())
        // refused, not timed out: the timeout only has to be longer than a
        // loaded machine takes to report the refusal (300 ms was not, once)
        configuration.connectTimeout = .seconds(5)
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        await #expect {
            _ = try await client.get("k")
        } throws: { error in
            (error as? RedisError)?.code == .connectionRefused
        }
        await client.shutdown()
    }

    @Test func subscriberSurvivesARedisRestartAndReportsTheGap() async throws {
        let server = try RedisServerProcess()
        try await server.start()
        let configuration = try server.configuration
        let subscriber = RedisSubscriber(
            configuration: configuration,
            backoff: Backoff(base: .milliseconds(50), cap: .milliseconds(500)),
            pingInterval: .milliseconds(500),
            logger: TestEnvironment.logger
        )
        let publisher = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }

        // wait until connected, then subscribe to a channel and a pattern
        try await eventually { subscriber.isConnected }
        try await subscriber.subscribe(["room:1"])
        try await subscriber.psubscribe(["pattern:*"])
        var events = subscriber.events.makeAsyncIterator()

        #expect(try await publisher.publish("room:1", "before") == 1)
        #expect(try await Self.nextMessage(&events) == "room:1 before")

        await server.kill()
        // after the kill: the subscriber may hear a last pong just before it
        let killedAt = Date()
        // the outage lasts until the subscriber has noticed it
        try await eventually { !subscriber.isConnected }
        try await server.start()

        // the subscriber reconnects, subscribes again and says what it may have missed
        let gap = try await Self.nextEvent(&events)
        guard case .gap(let from, let to) = gap else {
            Issue.record("expected a gap event, got \(gap)")
            return
        }
        #expect(from <= killedAt)
        #expect(to > killedAt)
        #expect(to > from)

        // both subscriptions are back in place
        try await eventually { (try? await publisher.send("PUBSUB", "NUMSUB", "room:1").array?.last?.int) == 1 }
        #expect(try await publisher.publish("room:1", "after") == 1)
        #expect(try await Self.nextMessage(&events) == "room:1 after")
        #expect(try await publisher.publish("pattern:x", "matched") == 1)
        #expect(try await Self.nextMessage(&events) == "pattern:x matched")

        // unsubscribing stops delivery
        try await subscriber.unsubscribe(["room:1"])
        #expect(try await publisher.publish("room:1", "ignored") == 0)

        runner.cancel()
        await publisher.shutdown()
        await server.stop()
    }

    static func nextEvent(_ iterator: inout AsyncStream<RedisSubscriberEvent>.Iterator, timeout: Duration = .seconds(10)) async throws -> RedisSubscriberEvent {
        let box = IteratorBox(iterator)
        let event = try await withThrowingTaskGroup(of: RedisSubscriberEvent?.self) { group in
            group.addTask { await box.next() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        iterator = box.iterator
        guard let event else { throw TimedOut() }
        return event
    }

    static func nextMessage(_ iterator: inout AsyncStream<RedisSubscriberEvent>.Iterator) async throws -> String {
        switch try await self.nextEvent(&iterator) {
        case .message(let channel, let payload): return "\(channel) \(String(buffer: payload))"
        case .patternMessage(_, let channel, let payload): return "\(channel) \(String(buffer: payload))"
        case .gap: return "gap"
        }
    }
}


/// Lets a child task advance an iterator owned by the test.
final class IteratorBox: @unchecked Sendable {
    var iterator: AsyncStream<RedisSubscriberEvent>.Iterator
    init(_ iterator: AsyncStream<RedisSubscriberEvent>.Iterator) { self.iterator = iterator }
    func next() async -> RedisSubscriberEvent? { await self.iterator.next() }
}
