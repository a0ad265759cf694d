import Foundation
import ParleyCore

/// A private PostgreSQL cluster that a test may stop (`immediate`, as a
/// crash) and start again on the same port; the shared one from
/// scripts/test is never touched. As root the server runs as the `postgres`
/// user (PostgreSQL refuses root), in a folder scripts/test gave it.
public final class PostgresServerProcess: @unchecked Sendable {
    public let port: Int
    private let directory: String
    private let bin: String

    public init() throws {
        self.port = try TestEnvironment.freePort()
        self.bin = try TestEnvironment.require("PARLEY_TEST_PG_BIN")
        self.directory = try TestEnvironment.require("PARLEY_TEST_PG_SCRATCH") + "/pg-\(UUID().uuidString.prefix(8))"
    }

    /// The URL of its `parley` database (trust authentication on loopback: tests only).
    public var url: String { "postgres://parley@127.0.0.1:\(self.port)/parley" }

    /// Creates the cluster and the `parley` database, and applies the migrations.
    public func create() async throws {
        try await self.run("\(self.bin)/initdb", ["-D", "\(self.directory)/data", "-U", "parley", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"])
        try await self.start()
        try await self.run("\(self.bin)/createdb", ["-h", "127.0.0.1", "-p", "\(self.port)", "-U", "parley", "parley"])
        let migrate = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["migrate"], environment: ["PARLEY_DATABASE_URL": self.url, "PARLEY_LOG_LEVEL": "warning"])
        guard migrate.status == 0 else { throw PostgresServerError(description: "migrate failed: \(migrate.output)") }
    }

    public func start() async throws {
        try await self.run("\(self.bin)/pg_ctl", [
            "-D", "\(self.directory)/data", "-l", "\(self.directory)/server.log", "-w", "-t", "30", "start",
            "-o", "-p \(self.port) -k \(self.directory) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
        ])
    }

    /// Stops at once, as a crash would (`pg_ctl -m immediate`): open connections are cut.
    public func crash() async throws {
        try await self.run("\(self.bin)/pg_ctl", ["-D", "\(self.directory)/data", "-m", "immediate", "-w", "stop"])
    }

    public func stop() async {
        _ = try? await self.run("\(self.bin)/pg_ctl", ["-D", "\(self.directory)/data", "-m", "fast", "-w", "stop"])
    }

    /// Runs a PostgreSQL tool as the user the cluster belongs to.
    private func run(_ tool: String, _ arguments: [String]) async throws {
        let asRoot = getuid() == 0
        if asRoot {
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            _ = try await ChildProcess.run("/usr/bin/chown", ["postgres:postgres", self.directory])
        } else {
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        }
        // from /: the server's user may not be allowed into the test's folder
        let result = try await ChildProcess.run(
            "/bin/sh", ["-c", asRoot ? #"cd / && exec /usr/sbin/runuser -u postgres -- "$@""# : #"cd / && exec "$@""#, "sh", tool] + arguments,
            timeout: .seconds(60)
        )
        guard result.status == 0 else { throw PostgresServerError(description: "\(tool) failed (\(result.status)): \(result.output)") }
    }

    deinit {
        let (bin, directory) = (self.bin, self.directory)
        let pgctl = ["\(bin)/pg_ctl", "-D", "\(directory)/data", "-m", "immediate", "stop"]
        let stop = ChildProcess("/bin/sh", ["-c", getuid() == 0 ? #"cd / && exec /usr/sbin/runuser -u postgres -- "$@""# : #"cd / && exec "$@""#, "sh"] + pgctl)
        try? stop.start()
    }
}

public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
}
