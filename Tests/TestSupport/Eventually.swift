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
