import Synchronization

/// A value shared between tasks and NIO callbacks, behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) {
        self.mutex = Mutex(value)
    }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        try self.mutex.withLock { try body(&$0) }
    }
}
