import Foundation
import ParleyCore
import ParleySchema
import ParleyTestSupport
import PostgresNIO
import Testing

/// The real `parley` binary: configuration errors, migrations from several
/// processes, and a serving gateway that shuts down gracefully.
@Suite struct CommandLineTests {
    static let valid = [
        "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        "PARLEY_DATABASE_URL": "postgres://parley@127.0.0.1:1/parley",
        "PARLEY_REDIS_URL": "redis://127.0.0.1:1/0",
        "PARLEY_JWT_SECRET": String(repeating: "k", count: 40),
    ]

    @Test(arguments: [
        ("PARLEY_DATABASE_URL", nil, "missing"),
        ("PARLEY_DATABASE_URL", "mysql://x@h/db", "scheme must be postgres://"),
        ("PARLEY_REDIS_URL", nil, "missing"),
        ("PARLEY_REDIS_URL", "redis://h:port/0", "not a URL"),
        ("PARLEY_JWT_SECRET", nil, "missing"),
        ("PARLEY_JWT_SECRET", "short-secret", "at least 32 bytes (got 12)"),
        ("PARLEY_HTTP_PORT", "eighty", "must be an integer"),
        ("PARLEY_HTTP_PORT", "-1", "between 0 and 65535"),
        ("PARLEY_LOG_LEVEL", "chatty", "must be one of"),
        ("PARLEY_ALLOWED_ORIGINS", "localhost:3000", "not an origin"),
        ("PARLEY_ENV", "staging", "production or development"),
        ("PARLEY_LOG_FORMAT", "xml", "must be text or json"),
        ("PARLEY_METRICS_PORT", "nine", "must be an integer"),
        ("PARLEY_DATABASE_DEADLINE_MS", "0", "between 100 and"),
        ("PARLEY_WS_REORDER_MS", "6000", "between 0 and 5000"),
        ("PARLEY_WS_HEARTBEAT_S", "0", "between 1 and 300"),
        ("PARLEY_SEND_CONCURRENCY", "0", "between 1 and 64"),
        ("PARLEY_CRACKLIB_DICT", "/nonexistent/dict", "cannot read the cracklib dictionary"),
        ("PARLEY_VAPID_PRIVATE_KEY", "not-a-key-at-all", "32-byte P-256 private key"),
    ] as [(String, String?, String)])
    func serveRefusesABadSettingWithOneLine(setting: String, value: String?, problem: String) async throws {
        var environment = Self.valid
        environment[setting] = value
        let (status, output) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["serve", "--no-migrate"], environment: environment, inheritEnvironment: false, timeout: .seconds(20))
        #expect(status == 78)
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "expected one line, got:\n\(output)")
        #expect(lines.first?.hasPrefix("parley: configuration error: \(setting): ") == true, "got: \(output)")
        #expect(output.contains(problem), "got: \(output)")
        if setting == "PARLEY_JWT_SECRET" || setting == "PARLEY_VAPID_PRIVATE_KEY", let value { #expect(!output.contains(value), "a secret must never be echoed") }
    }

    @Test func vapidKeyPrintsAPairTheServersLoadAndMailerStillNamesTheNotifier() async throws {
        let (status, output) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["vapid-key"], environment: [:], inheritEnvironment: false)
        #expect(status == 0)
        let lines = output.split(separator: "\n").map(String.init)
        let privateKey = try #require(lines.first { $0.hasPrefix("PARLEY_VAPID_PRIVATE_KEY=") }).dropFirst("PARLEY_VAPID_PRIVATE_KEY=".count)
        let key = try #require(WebPush.VAPIDKey(base64URL: String(privateKey), subject: "mailto:ops@example.test"))
        #expect(lines.contains { $0.hasSuffix(key.publicKey) }, "the public key is printed too")
        // a key without a subject is named at start, without echoing the key
        var environment = Self.valid
        environment["PARLEY_VAPID_PRIVATE_KEY"] = String(privateKey)
        let refused = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["serve", "--no-migrate"], environment: environment, inheritEnvironment: false, timeout: .seconds(20))
        #expect(refused.status == 78)
        #expect(refused.output.hasPrefix("parley: configuration error: PARLEY_VAPID_SUBJECT: missing"), "\(refused.output)")
        #expect(!refused.output.contains(privateKey))
        // `parley mailer` is the notifier under its earlier name
        let help = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["mailer", "--help"], environment: [:], inheritEnvironment: false)
        #expect(help.status == 0)
        #expect(help.output.contains("Web Push"), "\(help.output)")
    }

    @Test func flagsOverrideEnvironmentAndAreValidatedToo() async throws {
        let (status, output) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["serve", "--port", "99999"], environment: Self.valid, inheritEnvironment: false)
        #expect(status == 78)
        #expect(output.contains("PARLEY_HTTP_PORT: must be between 0 and 65535 (got 99999)"))
    }

    @Test func aTakenPortIsNamedAtStart() async throws {
        let port = try TestEnvironment.freePort()
        let holder = ChildProcess(
            "/usr/bin/python3",
            ["-c", "import socket,time; s=socket.socket(); s.bind(('127.0.0.1', \(port))); s.listen(); print('listening', flush=True); time.sleep(60)"]
        )
        try holder.start()
        defer { holder.signal(SIGKILL) }
        try await eventually { holder.outputText.contains("listening") }
        for (setting, settings) in [
            ("PARLEY_HTTP_PORT", ["PARLEY_HTTP_PORT": "\(port)"]),
            ("PARLEY_METRICS_PORT", ["PARLEY_HTTP_PORT": "\(try TestEnvironment.freePort())", "PARLEY_METRICS_PORT": "\(port)"]),
        ] {
            let (status, output) = try await ChildProcess.run(
                try TestEnvironment.parleyBinary(), ["serve", "--no-migrate"], environment: Self.valid.merging(settings) { $1 }, inheritEnvironment: false, timeout: .seconds(20)
            )
            #expect(status == 78, "\(setting): \(output)")
            let last = output.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last == "parley: configuration error: \(setting): 127.0.0.1:\(port) is already in use (another process listens there; choose another port)", "got: \(output)")
        }
    }

    @Test func migrateNeedsOnlyTheDatabase() async throws {
        let (status, output) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["migrate"], environment: ["PATH": "/usr/bin:/bin"], inheritEnvironment: false)
        #expect(status == 78)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("parley: configuration error: PARLEY_DATABASE_URL: missing"))
    }

    @Test func twoMigrateProcessesStartedTogetherBothSucceed() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        let children = (0..<2).map { _ in
            ChildProcess(try! TestEnvironment.parleyBinary(), ["migrate"], environment: ["PARLEY_DATABASE_URL": database.url])
        }
        for child in children { try child.start() }
        for child in children {
            let status = await child.waitForExit(timeout: .seconds(60))
            #expect(status == 0, "migrate failed:\n\(child.outputText)")
        }
        let applied = children.map { $0.outputText.components(separatedBy: "applied migration").count - 1 }
        #expect(applied.reduce(0, +) == Schema.migrations.count, "each migration must be applied by exactly one process")
        let rows = try await database.withClient { client in
            try await client.query("SELECT name FROM schema_migrations ORDER BY version", logger: TestEnvironment.logger).collect().map { try $0.decode(String.self) }
        }
        #expect(rows == Schema.migrations.map(\.name))
    }

    @Test func twoGatewaysStartTogetherServeAndStopGracefully() async throws {
        let database = try await TestDatabase.create()
        defer { Task { await database.drop() } }
        // both migrate on start, at the same time, on an empty database; one logs JSON
        let gateways = try [["PARLEY_LOG_FORMAT": "json"], [:]].map { try GatewayProcess(databaseURL: database.url, environment: $0) }
        for gateway in gateways { try await gateway.waitUntilReady() }

        for gateway in gateways {
            let (status, body) = try await HTTP.get("\(gateway.operationsURL)/readyz")
            #expect(status == 200)
            #expect(String(decoding: body, as: UTF8.self).contains("\"postgres\":\"ok\""))
            #expect(try await HTTP.get("\(gateway.operationsURL)/metrics").status == 200)
            #expect(try await HTTP.get("\(gateway.baseURL)/metrics").status == 404, "metrics are not public")
            let missing = try await HTTP.request("GET", "\(gateway.baseURL)/v1/missing")
            #expect(missing.status == 404)
            #expect(missing.headers["content-type"] == "application/problem+json")
            #expect(missing.headers["x-request-id"] != nil)
        }

        // SIGTERM: the process finishes and exits 0
        for gateway in gateways {
            gateway.child.signal(SIGTERM)
            let status = await gateway.child.waitForExit(timeout: .seconds(15))
            #expect(status == 0, "gateway did not exit cleanly:\n\(gateway.child.outputText)")
        }
        // one JSON object per line, for log collectors
        let jsonLines = gateways[0].child.outputText.split(separator: "\n")
        #expect(jsonLines.count > 3)
        for line in jsonLines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] is String && object?["message"] is String && object?["timestamp"] is String, "not a JSON log line: \(line)")
        }
        let output = gateways.map(\.child.outputText).joined()
        #expect(output.components(separatedBy: "applied migration").count - 1 == Schema.migrations.count)
        #expect(!output.contains("PARLEY_JWT_SECRET") && !output.contains("end-to-end-test-secret"))
    }
}
