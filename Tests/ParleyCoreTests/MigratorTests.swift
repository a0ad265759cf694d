import Foundation
import Logging
import ParleyCore
import ParleySchema
import ParleyTestSupport
import PostgresNIO
import Testing

@Suite struct MigratorTests {
    @Test func everySQLFileIsEmbeddedInOrder() throws {
        let sqlDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../sql").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: sqlDirectory.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files.map { String($0.dropLast(4)) } == Schema.migrations.map(\.name))
        #expect(Schema.migrations.map(\.version) == Array(1...Schema.migrations.count))
        for migration in Schema.migrations {
            let text = try String(contentsOf: sqlDirectory.appendingPathComponent(migration.name + ".sql"), encoding: .utf8)
            #expect(text == migration.sql, "\(migration.name).sql differs from the embedded copy: rebuild")
        }
    }

    @Test func applyingTwiceIsANoOp() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let (first, second, tables) = try await database.withClient { client in
            let first = try await Migrator().migrate(client: client, logger: TestEnvironment.logger)
            let second = try await Migrator().migrate(client: client, logger: TestEnvironment.logger)
            var tables: [String] = []
            for try await name in try await client.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
                logger: TestEnvironment.logger
            ).decode(String.self) {
                tables.append(name)
            }
            return (first, second, tables)
        }
        #expect(first.map(\.name) == Schema.migrations.map(\.name))
        #expect(second.isEmpty)
        for table in ["users", "sessions", "refresh_tokens", "chats", "chat_members", "messages", "attachments", "message_attachments", "schema_migrations"] {
            #expect(tables.contains(table), "missing table \(table)")
        }
    }

    @Test func theSendBatchRunsOnGenericPlansAndTheOlderOneAsBefore() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let settings = try await database.withClient { client in
            _ = try await Migrator().migrate(client: client, logger: TestEnvironment.logger)
            var settings: [Int: [String]] = [:]
            for try await (arguments, config) in try await client.query(
                "SELECT pronargs::int, coalesce(proconfig, '{}') FROM pg_proc WHERE proname = 'parley_send_batch'",
                logger: TestEnvironment.logger
            ).decode((Int, [String]).self) {
                settings[arguments] = config
            }
            return settings
        }
        // 010: no connection plans the decision query again on every batch
        #expect(settings[10] == ["plan_cache_mode=force_generic_plan"])
        #expect(settings[8] == [], "the function kept for a rolling upgrade is untouched")
    }

    @Test func concurrentMigratorsApplyEachFileOnce() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let next = (Schema.migrations.last?.version ?? 0) + 1
        let extra = SchemaMigration(version: next, name: "\(next)_test", sql: "CREATE TABLE extra (id int PRIMARY KEY); INSERT INTO extra VALUES (1);")
        let migrator = Migrator(migrations: Schema.migrations + [extra])
        let applied = try await withThrowingTaskGroup(of: [SchemaMigration].self) { group in
            for _ in 0..<6 {
                group.addTask { try await migrator.run(database: database.settings, logger: TestEnvironment.logger) }
            }
            return try await group.reduce(into: [String]()) { $0 += $1.map(\.name) }
        }
        #expect(applied.sorted() == (Schema.migrations.map(\.name) + [extra.name]).sorted())
        let rows = try await database.withClient { client in
            try await client.query("SELECT count(*) FROM extra", logger: TestEnvironment.logger).collect().first?.decode(Int.self)
        }
        #expect(rows == 1)
    }

    @Test func aFailingMigrationRollsBackAndIsNotRecorded() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let next = (Schema.migrations.last?.version ?? 0) + 1
        let broken = SchemaMigration(version: next, name: "\(next)_broken", sql: "CREATE TABLE half (id int); SELECT no_such_function();")
        do {
            try await Migrator(migrations: Schema.migrations + [broken]).run(database: database.settings, logger: TestEnvironment.logger)
            Issue.record("the broken migration should have failed")
        } catch {
            #expect("\(error)".contains("no_such_function"))
        }
        let (versions, halfExists) = try await database.withClient { client in
            let versions = try await client.query("SELECT version FROM schema_migrations ORDER BY 1", logger: TestEnvironment.logger).collect().map { try $0.decode(Int.self) }
            let half = try await client.query("SELECT to_regclass('half') IS NOT NULL", logger: TestEnvironment.logger).collect().first?.decode(Bool.self)
            return (versions, half)
        }
        #expect(versions == Schema.migrations.map(\.version))
        #expect(halfExists == false)
    }

    @Test func anUnreachableDatabaseFailsWithAClearError() async throws {
        var settings = try TestEnvironment.databaseSettings()
        settings.port = try TestEnvironment.freePort()
        await #expect {
            try await Migrator().run(database: settings, logger: TestEnvironment.logger, timeout: .seconds(2))
        } throws: { error in
            "\(error)".contains("did not answer")
        }
    }
}
