import Foundation
import HiredisNIO
import Logging
import Synchronization
import ParleyCore
import PostgresNIO

/// A test needs a server that is not configured: it fails (never skips) and
/// says which variable to set. scripts/test sets them all.
public struct MissingTestServer: Error, CustomStringConvertible {
    public let variable: String
    public var description: String { "\(self.variable) is not set: run the tests through scripts/test, which starts the servers and sets it" }
}

public enum TestEnvironment {
    public static func require(_ variable: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else { throw MissingTestServer(variable: variable) }
        return value
    }

    /// The shared test PostgreSQL (database `parley`, role with CREATEDB).
    /// Pools of 4: some 60 suites run at once against this one server, and
    /// a pool opens all its connections at start (20 each would be 1,200
    /// sessions opening together; `DatabasePoolTests` checks the pool itself).
    public static func databaseSettings() throws -> DatabaseSettings {
        var settings = try DatabaseSettings(url: self.require("PARLEY_TEST_DATABASE_URL"))
        settings.maxConnections = 4
        return settings
    }

    /// The shared test Redis.
    public static func redisConfiguration() throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: self.require("PARLEY_TEST_REDIS_URL"))
        // some 60 suites start at once on two cores (private servers starting,
        // gateways connecting): a local connect has been seen to take over the
        // production default of 2 s then. No test here measures connect time.
        configuration.connectTimeout = .seconds(10)
        return configuration
    }

    /// The shared test Redis Cluster (three masters, three replicas).
    public static func redisClusterConfiguration() throws -> RedisConfiguration {
        var configuration = try RedisConfiguration(url: self.require("PARLEY_TEST_REDIS_CLUSTER_URL"))
        configuration.connectTimeout = .seconds(10)
        return configuration
    }

    /// The `parley` binary built by scripts/test.
    public static func parleyBinary() throws -> String {
        try self.require("PARLEY_BIN")
    }

    /// A folder for this test run's files (removed by scripts/test).
    public static func scratchDirectory() throws -> URL {
        let base = URL(fileURLWithPath: try self.require("PARLEY_TEST_TMP"))
        let dir = base.appendingPathComponent("t-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A client address of its own for a test's requests (sent as
    /// X-Forwarded-For through the trusted loopback proxy), so that per-address
    /// limits of one test never touch another: a random /64 (limits count an
    /// IPv6 address by its /64) of 2001:db8::/32, the range reserved for
    /// documentation — only ever a header value.
    public static func randomClientAddress() -> String {
        let group = { String(UInt16.random(in: 1...0xFFFE), radix: 16) }
        return "2001:db8:\(group()):\(group()):\(group())::\(group())"
    }

    public static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = ProcessInfo.processInfo.environment["PARLEY_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }

    /// A TCP port that nobody listens on right now, below Linux's ephemeral
    /// range (32768+): a server restarted on it during a test cannot find it
    /// taken by some client's outgoing connection. Never the same port twice
    /// in one test process: two ports handed out before either is bound (a
    /// gateway's port and its metrics port) would otherwise collide now and
    /// then, and the second server would fail to bind.
    public static func freePort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            guard Self.handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if Self.canBind(port) { return port }
        }
        throw POSIXError(.EADDRINUSE)
    }

    private static let handedOut = Mutex<Set<Int>>([])

    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// A fresh, empty database on the test server, dropped by `drop()`.
public struct TestDatabase: Sendable {
    public let settings: DatabaseSettings
    public let name: String

    public static func create() async throws -> TestDatabase {
        let admin = try TestEnvironment.databaseSettings()
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        try await Self.withAdmin(admin) { client in
            try await client.query("CREATE DATABASE \(unescaped: String(name))", logger: TestEnvironment.logger)
        }
        var settings = admin
        settings.database = String(name)
        settings.maxConnections = 8
        return TestDatabase(settings: settings, name: String(name))
    }

    public func drop() async {
        guard let admin = try? TestEnvironment.databaseSettings() else { return }
        try? await Self.withAdmin(admin) { client in
            try await client.query("DROP DATABASE IF EXISTS \(unescaped: self.name) WITH (FORCE)", logger: TestEnvironment.logger)
        }
    }

    /// The database URL, as a process would be given it.
    public var url: String {
        let s = self.settings
        let password = s.password.map { ":\($0)" } ?? ""
        return "postgres://\(s.username)\(password)@\(s.host):\(s.port)/\(s.database)"
    }

    /// Runs `body` with a running client on this database.
    public func withClient<T: Sendable>(_ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
        try await withPostgresClient(self.settings, body)
    }

    static func withAdmin(_ settings: DatabaseSettings, _ body: @escaping @Sendable (PostgresClient) async throws -> Void) async throws {
        var admin = settings
        admin.database = "postgres"
        admin.maxConnections = 1
        try await withPostgresClient(admin, body)
    }
}

/// Runs `body` while a PostgresClient for `settings` is running.
public func withPostgresClient<T: Sendable>(_ settings: DatabaseSettings, _ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws -> T {
    let client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: TestEnvironment.logger)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            await client.run()
            return nil
        }
        defer { group.cancelAll() }
        let result = try await body(client)
        return result
    }
}
