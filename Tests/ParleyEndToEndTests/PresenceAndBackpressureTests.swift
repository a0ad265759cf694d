import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import Testing

@Suite struct PresenceAndBackpressureTests {
    @Test func presenceCrossesInstancesAndSurvivesAKilledInstance() async throws {
        let (g1, g2) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "PresA")
        let b = try await E2EUser.register(on: g2, name: "PresB")
        let chat = try await a.group(on: g1, members: [b])
        let watcher = try await b.connect(g2)

        // online on the first connection, offline within 1 s of the last clean close
        let first = try await a.connect(g1)
        let online = try await watcher.next("presence")
        #expect(online["user_id"] as? String == a.id)
        #expect(online["online"] as? Bool == true)
        let listed = try await HTTP.json("GET", "\(g2.baseURL)/v1/chats/\(chat)/presence", token: b.token)
        #expect(Set(listed.json["online"] as? [String] ?? []) == [a.id, b.id])
        let second = try await a.connect(g2)
        // both connections are in Redis before the first closes
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let connections = PresenceKeys.user(try #require(UUID(uuidString: a.id)), cluster: redis.configuration.isCluster)
        try await eventually { try await redis.zcard(connections) == 2 }
        await first.close()
        // g1 has taken the first connection out: it saw another one left, so no offline goes out
        try await eventually { try await redis.zcard(connections) == 1 }
        await redis.shutdown()
        #expect(!watcher.allFrames.contains { $0["type"] as? String == "presence" && $0["online"] as? Bool == false }, "still online through the second connection")
        let clock = ContinuousClock()
        let closedAt = clock.now
        await second.close()
        let offline = try await watcher.next("presence", timeout: .seconds(5))
        #expect(offline["online"] as? Bool == false)
        #expect(clock.now - closedAt < .seconds(1))

        // kill -9 of the instance holding A's only connection: offline within 60 s
        let doomed = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), arguments: ["--no-migrate"])
        try await doomed.waitUntilReady()
        _ = try await a.connect(doomed)
        #expect(try await watcher.next("presence")["online"] as? Bool == true)
        let killedAt = clock.now
        doomed.child.signal(SIGKILL)
        let swept = try await watcher.next("presence", timeout: .seconds(60))
        #expect(swept["online"] as? Bool == false)
        #expect(clock.now - killedAt < .seconds(60))
        let after = try await HTTP.json("GET", "\(g1.baseURL)/v1/chats/\(chat)/presence", token: b.token)
        #expect(after.json["online"] as? [String] == [b.id])
    }

    @Test func aReaderThatNeverReadsIsClosedWith4008WhileOthersKeepUp() async throws {
        let (g1, _) = try await twoGateways(environment: ["PARLEY_SENDS_PER_SECOND": "10000", "PARLEY_WS_QUEUE_LIMIT": "50"])
        let sender = try await E2EUser.register(on: g1, name: "Flood")
        let slowUser = try await E2EUser.register(on: g1, name: "Slow")
        let fastUser = try await E2EUser.register(on: g1, name: "Fast")
        let chat = try await sender.group(on: g1, members: [slowUser, fastUser])
        let slow = try await slowUser.connect(g1)
        let fast = try await fastUser.connect(g1)
        slow.pauseReading(true)
        let total = 1200
        let body = String(repeating: "x", count: 3900)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<6 {
                group.addTask {
                    for _ in 0..<(total / 6) {
                        let response = try await sender.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body])
                        #expect(response.status == 201, "worker \(worker)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while DeliveryUnderFaultsTests.seqs(fast, chat: chat).count < total && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(DeliveryUnderFaultsTests.seqs(fast, chat: chat) == Array(1...total), "the normal reader got everything, in order")
        slow.pauseReading(false)
        // the close frame (4008) waits behind what the reader never read; a
        // reader that still does not read 5 s after the close was decided is
        // dropped without it (the close handshake time), which on a slow
        // machine happens before the sends above end
        let code = await slow.waitForClose(timeout: .seconds(20))
        #expect(slow.isClosed, "the reader that fell behind was disconnected")
        #expect(code == 4008 || code == nil, "4008, or dropped unread after the handshake time: \(code.map(String.init) ?? "none")")
        #expect(DeliveryUnderFaultsTests.seqs(slow, chat: chat).count < total)
    }
}
