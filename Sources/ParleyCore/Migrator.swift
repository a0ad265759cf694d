public import Logging
public import ParleySchema
public import PostgresNIO

/// Applies the numbered migrations of sql/ in order, each in its own
/// transaction, and records them in `schema_migrations`.
///
/// Every step takes a transaction-scoped advisory lock first and re-reads
/// what is applied, so any number of processes may migrate at once: each file
/// is applied exactly once and nobody fails.
public struct Migrator: Sendable {
    /// pg_advisory_xact_lock key: "parley" in ASCII.
    static let lockKey: Int64 = 0x7061_726C_6579

    public let migrations: [SchemaMigration]

    public init(migrations: [SchemaMigration] = Schema.migrations) {
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Returns the migrations this call applied (empty when all were applied before).
    @discardableResult
    public func migrate(client: PostgresClient, logger: Logger) async throws -> [SchemaMigration] {
        var applied: [SchemaMigration] = []
        while true {
            let step: SchemaMigration? = try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey))", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version    integer PRIMARY KEY,
                        name       text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """,
                    logger: logger
                )
                var done: Set<Int> = []
                for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
                    done.insert(version)
                }
                guard let next = self.migrations.first(where: { !done.contains($0.version) }) else { return nil }
                for statement in SQLStatementSplitter.split(next.sql) {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(next.version), \(next.name))",
                    logger: logger
                )
                return next
            }
            guard let step else { break }
            logger.info("applied migration", metadata: ["migration.name": "\(step.name)"])
            applied.append(step)
        }
        return applied
    }
}

extension Migrator {
    /// Opens a short-lived pool, migrates, and closes it. Fails with a clear
    /// error when PostgreSQL does not answer within `timeout`.
    @discardableResult
    public func run(database: DatabaseSettings, logger: Logger, timeout: Duration = .seconds(30)) async throws -> [SchemaMigration] {
        var settings = database
        settings.maxConnections = 2
        let client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: [SchemaMigration]?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            group.addTask {
                do {
                    return try await withDeadline(timeout) { try await self.migrate(client: client, logger: logger) }
                } catch is DeadlineExceeded {
                    throw MigrationError(message: "PostgreSQL at \(database.host):\(database.port) did not answer within \(timeout)")
                } catch let error as PSQLError {
                    throw MigrationError(message: "PostgreSQL refused the migration: \(error.serverInfo?[.message] ?? "\(error.code)")")
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let applied = result { return applied }
            }
            return []
        }
    }
}

public struct MigrationError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { self.message }
}
