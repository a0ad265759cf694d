import NIOCore
import NIOPosix
import Synchronization

public struct DeadlineExceeded: Error {
    public init() {}
}

/// Runs `operation` and returns its result, or throws `DeadlineExceeded` after
/// `timeout` — without waiting for an operation that ignores cancellation
/// (it is cancelled and left to finish on its own).
///
/// The deadline is a timer of an event loop, cancelled as soon as the
/// operation ends. Not a task sleeping: a cancelled `Task.sleep` keeps its
/// timer (and the memory behind it) until its deadline, and every
/// PostgreSQL statement runs through here.
public func withDeadline<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = Once<T>()
    let pending = Mutex<(work: Task<Void, Never>, timer: Scheduled<Void>)?>(nil)
    defer {
        if let pending = pending.withLock({ $0 }) {
            pending.work.cancel()
            pending.timer.cancel()
        }
    }
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        once.set(continuation)
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) { once.finish(.failure(DeadlineExceeded())) }
        let work = Task {
            do { once.finish(.success(try await operation())) } catch { once.finish(.failure(error)) }
        }
        pending.withLock { $0 = (work, timer) }
    }
}

/// Resumes a continuation exactly once, whoever comes first.
private final class Once<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation.withLock { $0 = continuation }
    }

    func finish(_ result: Result<T, any Error>) {
        let continuation = self.continuation.withLock { stored in
            defer { stored = nil }
            return stored
        }
        continuation?.resume(with: result)
    }
}
