import Foundation
import ParleyTestSupport
import PostgresNIO
import Synchronization
import Testing

@testable import ParleyCore

@Suite struct CoalescingQueueTests {
    @Test func waitingKeysGoTogetherInArrivalOrderEachWithAllItsWaiters() {
        var queue = CoalescingQueue<String, Int>(maxInFlight: 2)
        do { let started = queue.enqueue("a", 1); #expect(started, "a lone request starts a batch at once") }
        do { let batch = queue.nextBatch(max: 10); #expect(batch.map(\.key) == ["a"] && batch.map(\.waiters) == [[1]]) }
        // "a" asked again while its statement runs: it waits for a statement of its own
        do { let started = queue.enqueue("a", 6); #expect(started) }
        do { let batch = queue.nextBatch(max: 10); #expect(batch.map(\.key) == ["a"] && batch.map(\.waiters) == [[6]]) }
        #expect(queue.inFlight == 2)
        do { let batch = queue.nextBatch(max: 10); #expect(batch.isEmpty) }
        #expect(queue.inFlight == 1)
        // while that batch's statement runs, requests queue
        do { let started = queue.enqueue("b", 2); #expect(started, "a second loop may run") }
        do { let started = queue.enqueue("c", 3); #expect(!started, "both slots are taken: it waits for a loop's next batch") }
        do { let started = queue.enqueue("b", 4); #expect(!started) }
        do { let started = queue.enqueue("d", 5); #expect(!started) }
        do {
            let batch = queue.nextBatch(max: 2)
            #expect(batch.map(\.key) == ["b", "c"], "arrival order, at most max distinct keys")
            #expect(batch.map(\.waiters) == [[2, 4], [3]], "a key asked for twice is read once for both")
        }
        #expect(queue.inFlight == 2)
        do { let batch = queue.nextBatch(max: 2); #expect(batch.map(\.key) == ["d"]) }
        do { let batch = queue.nextBatch(max: 2); #expect(batch.isEmpty, "nothing queued: this loop ends") }
        #expect(queue.inFlight == 1)
        do { let batch = queue.nextBatch(max: 2); #expect(batch.isEmpty) }
        #expect(queue.inFlight == 0 && queue.order.isEmpty && queue.waiting.isEmpty)
    }
}

@Suite struct CoalescedReadsTests {
    struct Refused: Error {}

    /// A read that records the keys of each statement and holds it until the
    /// test lets it finish; the test observes what started and what queued
    /// (never a timed wait).
    final class Gate: Sendable {
        private struct State {
            var calls: [[Int]] = []
            var held: [CheckedContinuation<Void, Never>] = []
        }
        private let state = Mutex(State())
        /// The readers' clock: it moves only when the test moves it.
        private let clock = Mutex(ContinuousClock.now)

        var calls: [[Int]] { self.state.withLock { $0.calls } }

        /// A reader of this gate's statements, one at a time.
        func reader(maxWait: Duration = .seconds(60)) -> CoalescedReads<Int, String> {
            CoalescedReads(maxInFlight: 1, maxBatch: 100, maxWait: maxWait, missing: "none", now: { self.clock.withLock { $0 } }) {
                try await self.read($0)
            }
        }

        /// Moves the readers' clock on.
        func advance(by duration: Duration) {
            self.clock.withLock { $0 += duration }
        }

        private func read(_ keys: [Int]) async throws -> [Int: String] {
            await withCheckedContinuation { continuation in
                self.state.withLock {
                    $0.calls.append(keys)
                    $0.held.append(continuation)
                }
            }
            if keys.contains(-1) { throw Refused() }
            return Dictionary(uniqueKeysWithValues: keys.filter { $0 != 0 }.map { ($0, "v\($0)") })
        }

        /// Waits until `count` statements have started (and are held).
        func started(_ count: Int) async throws {
            try await Self.until { self.state.withLock { $0.calls.count } >= count }
        }

        /// Polls `condition` every millisecond (a sleep, not a yield: a task
        /// that only yields can keep the task it waits for from running).
        static func until(_ condition: () -> Bool) async throws {
            while !condition() { try await Task.sleep(for: .milliseconds(1)) }
        }

        /// Lets the held statements finish.
        func release() {
            for continuation in self.state.withLock({ state in defer { state.held = [] }; return state.held }) { continuation.resume() }
        }

        /// Lets the running statement finish once `waiting` requests queued, then
        /// holds the next statement until it started, and lets it finish too.
        func runNext(after waiting: Int, of reads: CoalescedReads<Int, String>) async throws {
            try await Self.until { reads.waiting >= waiting }
            let before = self.calls.count
            self.release()
            try await self.started(before + 1)
            self.release()
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func requestsMadeWhileAStatementRunsAreAnsweredByTheNextOneTogether() async throws {
        let gate = Gate()
        let reads = gate.reader()
        async let first = reads.value(of: 1)
        try await gate.started(1)
        // the first statement is running: these wait for the next one, key 1 too
        // (the running statement may have started before it was asked)
        async let again = reads.value(of: 1)
        async let second = reads.value(of: 2)
        async let third = reads.value(of: 2)
        async let fourth = reads.value(of: 0)
        try await gate.runNext(after: 4, of: reads)
        let values = try await [first, again, second, third, fourth]
        #expect(values == ["v1", "v1", "v2", "v2", "none"], "a key the read leaves out gets the missing value")
        let calls = gate.calls
        #expect(calls.count == 2 && calls[0] == [1], "one statement for the four that waited")
        #expect(calls.count == 2 && calls[1].sorted() == [0, 1, 2], "each key once, 1 again")
    }

    @Test(.timeLimit(.minutes(1)))
    func aFailedStatementFailsEveryRequestItAnsweredAndTheNextStillRuns() async throws {
        let gate = Gate()
        let reads = gate.reader()
        async let lone = reads.value(of: 5)
        try await gate.started(1)
        // three requests of two keys wait for the next statement, which fails
        async let failing = reads.value(of: -1)
        async let failingToo = reads.value(of: -1)
        async let sharing = reads.value(of: 7)
        try await gate.runNext(after: 3, of: reads)
        #expect(try await lone == "v5")
        var failures = 0
        do { _ = try await failing } catch is Refused { failures += 1 }
        do { _ = try await failingToo } catch is Refused { failures += 1 }
        do { _ = try await sharing } catch is Refused { failures += 1 }
        #expect(failures == 3, "every request of the failed statement")
        async let later = reads.value(of: 3)
        try await gate.started(3)
        gate.release()
        #expect(try await later == "v3")
    }

    @Test(.timeLimit(.minutes(1)))
    func aRequestQueuedPastItsWaitFailsInsteadOfJoiningTheNextStatement() async throws {
        let gate = Gate()
        let reads = gate.reader(maxWait: .milliseconds(50))
        async let first = reads.value(of: 1)
        try await gate.started(1)
        async let late = reads.value(of: 2)
        try await Gate.until { reads.waiting >= 1 }
        // the running statement is slow: the queued request outlives its wait
        gate.advance(by: .milliseconds(200))
        gate.release()
        #expect(try await first == "v1")
        var failed = false
        do { _ = try await late } catch is DatabaseUnavailable { failed = true }
        #expect(failed)
        #expect(gate.calls == [[1]], "no statement for it")
        async let fresh = reads.value(of: 2)
        try await gate.started(2)
        gate.release()
        #expect(try await fresh == "v2")
    }

    @Test func usersChatsReadTogetherAreEachUsersOwn() async throws {
        try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
            let database = Database(client: postgres, deadline: .seconds(10), health: DatabaseHealth(logger: TestEnvironment.logger))
            let accounts = AccountStore(database: database, logger: TestEnvironment.logger)
            let chats = ChatStore(database: database, logger: TestEnvironment.logger)
            let tag = UUID().uuidString.prefix(8).lowercased()
            var created: [UUID] = []
            for index in 0..<4 {
                created.append(try #require(try await accounts.createUser(email: "positions-\(tag)-\(index)@example.test", displayName: "P", passwordHash: "x")).id)
            }
            let users = created
            // users 0 and 1 share a group; 0 and 2 a second one; user 3 is in none
            let shared = try await chats.createGroup(creator: users[0], title: "A", memberIDs: [users[1]], isPublic: false).id
            let other = try await chats.createGroup(creator: users[0], title: "B", memberIDs: [users[2]], isPublic: false).id
            _ = try await chats.send(batch: [NewMessage(chatID: shared, senderID: users[1], clientID: UUID(), body: "hi")], deadline: .seconds(10))

            let expected: [[UUID: Int64]] = [[shared: 1, other: 0], [shared: 1], [other: 0], [:]]
            // many at once: the reads form batches, and each caller gets its own user's chats
            let results = try await withThrowingTaskGroup(of: (Int, [UUID: Int64]).self) { group in
                for round in 0..<40 { group.addTask { (round % 4, try await chats.chatPositions(of: users[round % 4])) } }
                return try await group.reduce(into: [(Int, [UUID: Int64])]()) { $0.append($1) }
            }
            #expect(results.count == 40)
            for (index, positions) in results { #expect(positions == expected[index], "user \(index)") }
            // and one read alone
            #expect(try await chats.chatPositions(of: users[0]) == expected[0])
            // the statement itself, for the four at once (user 3 has no rows)
            let together = try await ChatStore.chatPositions(of: users, database: database, logger: TestEnvironment.logger)
            #expect(together == [users[0]: expected[0], users[1]: expected[1], users[2]: expected[2]])
        }
    }
}
