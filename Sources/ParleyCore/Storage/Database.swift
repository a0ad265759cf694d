import Foundation
public import Logging
import Metrics
public import PostgresNIO
import Synchronization

/// PostgreSQL as request and socket paths use it: every call answers within
/// a deadline, and while PostgreSQL is down calls fail at once.
///
/// - Each call (a query, read to its last row, or a whole transaction) must
///   finish within `deadline` (2 s by default), else it fails with
///   `DatabaseUnavailable` — a pool waiting for a server that is gone never
///   holds a request (the work left behind is cancelled).
/// - A circuit breaker (`DatabaseHealth`) opens after `failuresToOpen`
///   consecutive failures that mean "unreachable" (connection errors,
///   shutdown or startup of the server, deadlines); while it is open every
///   call fails at once. `DatabaseMonitor` probes PostgreSQL in the
///   background and closes the breaker as soon as a probe succeeds.
public struct Database: Sendable {
    public let client: PostgresClient
    public let health: DatabaseHealth
    public let deadline: Duration

    public init(client: PostgresClient, deadline: Duration = .seconds(2), health: DatabaseHealth) {
        self.client = client
        self.deadline = deadline
        self.health = health
    }

    /// Runs a query and reads all of its rows.
    @discardableResult
    public func query(_ query: PostgresQuery, logger: Logger, deadline: Duration? = nil) async throws -> CollectedRows {
        try await self.health.guarded(deadline ?? self.deadline) { [client] in
            var rows: [PostgresRow] = []
            for try await row in try await client.query(query, logger: logger) { rows.append(row) }
            return Collected(rows)
        }
    }

    /// Runs a prepared statement (prepared once per connection) and reads all of its rows.
    public func execute<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger, deadline: Duration? = nil
    ) async throws -> [Statement.Row] where Statement.Row: Sendable {
        try await self.health.guarded(deadline ?? self.deadline) { [client] in
            var rows: [Statement.Row] = []
            for try await row in try await client.execute(statement, logger: logger) { rows.append(row) }
            return rows
        }
    }

    /// `body` in one transaction (rolled back when it throws; its error comes out as itself).
    public func transaction<Result: Sendable>(
        logger: Logger, deadline: Duration? = nil, _ body: @escaping @Sendable (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await self.health.guarded(deadline ?? self.deadline) { [client] in
            try await client.transaction(logger: logger) { connection in try await body(connection) }
        }
    }
}

/// Rows read to the end (no connection is held while the caller goes through them).
public typealias CollectedRows = Collected<PostgresRow>

/// Values already in memory, as an async sequence (what stores iterate).
public struct Collected<Element>: AsyncSequence {
    public let elements: [Element]

    init(_ elements: [Element]) { self.elements = elements }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: IndexingIterator<[Element]>
        public mutating func next() async -> Element? { self.base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: self.elements.makeIterator()) }
}

extension Collected: Sendable where Element: Sendable {}

extension Collected where Element == PostgresRow {
    /// The rows decoded as tuples of columns.
    public func decode<each Column: PostgresDecodable>(_ columnType: (repeat each Column).Type) throws -> Collected<(repeat each Column)> {
        Collected<(repeat each Column)>(try self.elements.map { try $0.decode(columnType) })
    }
}

/// PostgreSQL could not be used: unreachable, shutting down, not answering
/// in time, or the circuit breaker is open. Answered 503 `unavailable`.
public struct DatabaseUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "PostgreSQL is unavailable: \(self.reason)" }
}

extension PSQLError {
    /// Whether the error means the server cannot be used right now (as
    /// opposed to a query it refused): the connection failed or closed, the
    /// server is shutting down or starting up (SQLSTATE class 57), out of
    /// connections (53), or a connection exception (08).
    public var meansUnavailable: Bool {
        switch self.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            return true
        case .server:
            let state = self.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("57") || state.hasPrefix("08") || state.hasPrefix("53")
        default:
            return false
        }
    }
}

/// The circuit breaker of one process's PostgreSQL, with its metrics.
public final class DatabaseHealth: Sendable {
    public enum State: String, Sendable {
        case closed, open
    }

    private struct Breaker {
        var state = State.closed
        var consecutiveFailures = 0
    }

    public let failuresToOpen: Int
    let logger: Logger
    private let breaker = Mutex(Breaker())
    private let up = Gauge(label: "parley_dependency_up", dimensions: [("dependency", "postgres")])
    private let circuitOpen = Gauge(label: "parley_circuit_open", dimensions: [("dependency", "postgres")])
    private let fastFailed = Counter(label: "parley_fast_failed_total", dimensions: [("dependency", "postgres")])
    private let timedOut = Counter(label: "parley_dependency_timeouts_total", dimensions: [("dependency", "postgres")])

    public init(failuresToOpen: Int = 3, logger: Logger) {
        self.failuresToOpen = failuresToOpen
        self.logger = logger
        self.up.record(1)
        self.circuitOpen.record(0)
    }

    public var state: State { self.breaker.withLock { $0.state } }

    /// Throws `DatabaseUnavailable` at once (and counts it) while the breaker
    /// is open: PostgreSQL is known to be down.
    public func failIfOpen() throws {
        if self.state == .open {
            self.fastFailed.increment()
            throw DatabaseUnavailable("failing fast while it is down (circuit open)")
        }
    }

    /// Runs `operation` unless the breaker is open, within `deadline`;
    /// failures that mean "unreachable" count towards opening the breaker
    /// and come out as `DatabaseUnavailable`.
    func guarded<T: Sendable>(_ deadline: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        try self.failIfOpen()
        do {
            let result = try await withDeadline(deadline, operation)
            self.succeeded()
            return result
        } catch is DeadlineExceeded {
            self.timedOut.increment()
            self.failed()
            throw DatabaseUnavailable("no answer within \(deadline)")
        } catch let error as PSQLError where error.meansUnavailable {
            self.failed()
            throw DatabaseUnavailable("\(error.code)")
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? PSQLError, inner.meansUnavailable {
                self.failed()
                throw DatabaseUnavailable("\(inner.code)")
            }
            if let begin = error.beginError as? PSQLError, begin.meansUnavailable {
                self.failed()
                throw DatabaseUnavailable("\(begin.code)")
            }
            throw error
        }
    }

    /// An answer came: whatever it was, the server is there.
    func succeeded() {
        let changed = self.breaker.withLock { breaker -> Bool in
            breaker.consecutiveFailures = 0
            defer { breaker.state = .closed }
            return breaker.state == .open
        }
        if changed {
            self.up.record(1)
            self.circuitOpen.record(0)
            self.logger.notice("PostgreSQL answers again: requests go through")
        }
    }

    func failed() {
        let opened = self.breaker.withLock { breaker -> Bool in
            breaker.consecutiveFailures += 1
            guard breaker.state == .closed, breaker.consecutiveFailures >= self.failuresToOpen else { return false }
            breaker.state = .open
            return true
        }
        if opened {
            self.up.record(0)
            self.circuitOpen.record(1)
            self.logger.error("PostgreSQL is unavailable: requests fail fast with 503 until a probe gets an answer")
        }
    }

    /// One background check (`SELECT 1`, bypassing the breaker): a failure
    /// counts like a request's (so an idle gateway notices an outage too), a
    /// success closes the breaker.
    public func probe(_ client: PostgresClient, timeout: Duration, logger: Logger) async -> Bool {
        do {
            try await withDeadline(timeout) { _ = try await client.query("SELECT 1", logger: logger).collect() }
            self.succeeded()
            return true
        } catch {
            self.failed()
            return false
        }
    }
}
