import Foundation
import ParleyCore
import Synchronization
import Testing

/// `withDeadline`, which every PostgreSQL statement runs through.
@Suite struct DeadlineTests {
    @Test func anOperationThatEndsInTimeGivesItsResultOrItsError() async throws {
        #expect(try await withDeadline(.seconds(10)) { 42 } == 42)
        struct Refused: Error {}
        await #expect(throws: Refused.self) { try await withDeadline(.seconds(10)) { throw Refused() } }
    }

    @Test func anOperationPastItsDeadlineIsCancelledAndNotWaitedFor() async throws {
        let (ended, ending) = AsyncStream.makeStream(of: Bool.self)
        let started = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(100)) {
                do {
                    try await Task.sleep(for: .seconds(60))
                    ending.yield(false)
                } catch {
                    ending.yield(Task.isCancelled)
                }
            }
        }
        #expect(await ended.first { _ in true } == true)
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func anOperationThatIgnoresCancellationIsLeftToFinishOnItsOwn() async throws {
        let release = Waiting()
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(100)) {
                await withCheckedContinuation { continuation in release.value.withLock { $0 = continuation } }
            }
        }
        // the deadline came while the operation was still waiting: it ends now
        while true {
            if let waiting = release.value.withLock({ $0 }) { return waiting.resume() }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

private final class Waiting: Sendable {
    let value = Mutex<CheckedContinuation<Void, Never>?>(nil)
}
