/// `eventually` ran out of time.
public struct TimedOut: Error {
    public init() {}
}

/// Polls `condition` until it holds, failing after `timeout`: what a test
/// waits for instead of sleeping and hoping.
public func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TimedOut()
}

/// Runs `body` while `service` runs beside it (a `Service.run`, say), and
/// cancels the service when `body` returns or throws.
public func whileRunning<T: Sendable>(
    _ service: @escaping @Sendable () async throws -> Void, _ body: () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self, returning: T.self) { group in
        group.addTask { try await service() }
        defer { group.cancelAll() }
        return try await body()
    }
}
