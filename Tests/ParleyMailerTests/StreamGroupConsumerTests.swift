import Foundation
import HiredisNIO
import ParleyTestSupport
import Synchronization
import Testing

@testable import ParleyMailer

/// The consumer both mail workers run on, against the real Redis.
@Suite struct StreamGroupConsumerTests {
    final class Handled: Sendable {
        let calls = Mutex<[(id: String, claimed: Bool)]>([])
        func record(_ id: String, claimed: Bool) -> Int {
            self.calls.withLock { calls in
                calls.append((id, claimed))
                return calls.filter { $0.id == id }.count
            }
        }
        var all: [(id: String, claimed: Bool)] { self.calls.withLock { $0 } }
    }

    @Test func failedEntriesAndThoseOfADeadConsumerAreClaimedAndHandledAgain() async throws {
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let stream = "test:consumer:\(UUID().uuidString)"
        let group = "workers"
        _ = try await redis.xgroupCreate(stream, group: group, startID: "0")
        // a consumer that read an entry and died before acknowledging it
        let abandoned = try await redis.xadd(stream, fields: [("n", "abandoned")])
        let read = try await redis.withDedicatedConnection { connection in
            try await connection.xreadgroup(stream, group: group, consumer: "dead", id: ">", count: 1).map { $0.id }
        }
        #expect(read == [abandoned])
        let failsOnce = try await redis.xadd(stream, fields: [("n", "fails once")])
        let fine = try await redis.xadd(stream, fields: [("n", "fine")])

        let handled = Handled()
        let consumer = StreamGroupConsumer(
            redis: redis, stream: stream, group: group, consumer: "live", count: 10, claimIdle: .milliseconds(200), logger: TestEnvironment.logger
        )
        let running = Task {
            try await consumer.run { entries, claimed in
                for entry in entries {
                    // the first attempt at one entry fails: it is not acknowledged
                    if handled.record(entry.id, claimed: claimed) == 1, entry.id == failsOnce { continue }
                    _ = try? await redis.xack(stream, group: group, ids: [entry.id])
                }
            }
        }
        defer { running.cancel() }
        let deadline = ContinuousClock.now + .seconds(15)
        while try await redis.xpendingCount(stream, group: group) > 0 || handled.all.count < 4, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let calls = handled.all
        #expect(try await redis.xpendingCount(stream, group: group) == 0)
        #expect(calls.filter { $0.id == abandoned }.map(\.claimed) == [true], "the dead consumer's entry is claimed")
        #expect(calls.filter { $0.id == failsOnce }.map(\.claimed) == [false, true], "a failed entry is handled again")
        #expect(calls.filter { $0.id == fine }.map(\.claimed) == [false])
        _ = try await redis.send("DEL", .string(stream))
    }
}
