// The schema migrations of this folder, embedded into the binary at build time
// (SwiftPM `.embedInCode`, which names 001_init.sql `_01_init_sql`). Add a migration: write sql/NNN_name.sql, list it in
// Package.swift (ParleySchema resources) and in `files` below; a unit test
// checks that every .sql file here is listed.

/// A numbered SQL migration.
public struct SchemaMigration: Sendable, Hashable {
    public let version: Int
    public let name: String
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

public enum Schema {
    public static let migrations: [SchemaMigration] = [
        SchemaMigration(version: 1, name: "001_init", sql: String(decoding: PackageResources._01_init_sql, as: UTF8.self)),
        SchemaMigration(version: 2, name: "002_accounts", sql: String(decoding: PackageResources._02_accounts_sql, as: UTF8.self)),
        SchemaMigration(version: 3, name: "003_send_batch", sql: String(decoding: PackageResources._03_send_batch_sql, as: UTF8.self)),
        SchemaMigration(version: 4, name: "004_message_edits", sql: String(decoding: PackageResources._04_message_edits_sql, as: UTF8.self)),
        SchemaMigration(version: 5, name: "005_reactions", sql: String(decoding: PackageResources._05_reactions_sql, as: UTF8.self)),
        SchemaMigration(version: 6, name: "006_blocks", sql: String(decoding: PackageResources._06_blocks_sql, as: UTF8.self)),
        SchemaMigration(version: 7, name: "007_mentions_search", sql: String(decoding: PackageResources._07_mentions_search_sql, as: UTF8.self)),
        SchemaMigration(version: 8, name: "008_chat_settings", sql: String(decoding: PackageResources._08_chat_settings_sql, as: UTF8.self)),
        SchemaMigration(version: 9, name: "009_push_subscriptions", sql: String(decoding: PackageResources._09_push_subscriptions_sql, as: UTF8.self)),
        SchemaMigration(version: 10, name: "010_send_batch_generic_plans", sql: String(decoding: PackageResources._10_send_batch_generic_plans_sql, as: UTF8.self)),
    ]
}
