import Foundation
import ParleyCore
import ParleyTestSupport
import PostgresNIO
import Testing

/// The pool every process opens (`DatabaseSettings.clientConfiguration`),
/// against the real PostgreSQL.
@Suite struct DatabasePoolTests {
    @Test func everySessionHasTheServersKeepAlivesAndTheTransactionTimeout() async throws {
        var settings = try TestEnvironment.databaseSettings()
        settings.maxConnections = 1
        let values = try await withPostgresClient(settings) { client in
            let rows = try await client.query(
                """
                SELECT current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'),
                       current_setting('tcp_keepalives_count'), current_setting('idle_in_transaction_session_timeout')
                """,
                logger: TestEnvironment.logger
            ).collect()
            return try #require(rows.first).decode((String, String, String, String).self)
        }
        // over TCP (over a Unix socket the server would report 0 for the first three)
        #expect(values == ("30", "10", "3", "15s"))
    }

    @Test func thePoolOpensAllItsConnectionsAtStartAndKeepsThem() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        var settings = database.settings
        settings.maxConnections = 3
        try await withPostgresClient(settings) { client in
            // the sessions on this fresh database: the pool's own (counted through one of them)
            @Sendable func sessions() async throws -> Int {
                let rows = try await client.query(
                    "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'",
                    logger: TestEnvironment.logger
                ).collect()
                return try #require(rows.first).decode(Int.self)
            }
            // one statement needs one connection; the pool opens the other two on its own
            let deadline = ContinuousClock.now + .seconds(30)
            var open = try await sessions()
            while open < 3, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
                open = try await sessions()
            }
            #expect(open == 3)
            // statements one after another leave them all open (none closes as idle)
            for _ in 0..<20 { _ = try await client.query("SELECT 1", logger: TestEnvironment.logger).collect() }
            #expect(try await sessions() == 3)
        }
    }
}
