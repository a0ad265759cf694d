import Synchronization

public struct DeadlineExceeded: Error {
    public init() {}
}

/// Runs `operation` and returns its result, or throws `DeadlineExceeded` after
/// `timeout` — without waiting for an operation that ignores cancellation
/// (it is cancelled and left to finish on its own).
public func withDeadline<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = Once<T>()
    let tasks = Mutex<[Task<Void, Never>]>([])
    defer { tasks.withLock { $0.forEach { $0.cancel() } } }
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        once.set(continuation)
        let work = Task {
            do { once.finish(.success(try await operation())) } catch { once.finish(.failure(error)) }
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            once.finish(.failure(DeadlineExceeded()))
        }
        tasks.withLock { $0 = [work, timer] }
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
