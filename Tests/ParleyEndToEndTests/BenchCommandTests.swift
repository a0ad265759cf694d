import Foundation
import ParleyTestSupport
import Testing

/// `parley bench` against real gateway processes, on a small scale: each
/// scenario runs end to end, reports JSON, and passes its own checks.
@Suite struct BenchCommandTests {
    func gateways(_ count: Int) async throws -> [GatewayProcess] {
        let databaseURL = try TestEnvironment.require("PARLEY_TEST_DATABASE_URL")
        let gateways = try (0..<count).map { _ in
            try GatewayProcess(databaseURL: databaseURL, environment: ["PARLEY_LOG_LEVEL": "warning", "PARLEY_SENDS_PER_SECOND": "1000"], arguments: ["--no-migrate"])
        }
        for gateway in gateways { try await gateway.waitUntilReady() }
        return gateways
    }

    /// Runs `parley bench ARGS --json FILE`; returns the exit status, the output and the JSON report.
    func bench(_ arguments: [String], timeout: Duration = .seconds(120)) async throws -> (Int32, String, [String: Any]) {
        let json = try TestEnvironment.scratchDirectory().appendingPathComponent("bench-\(UUID().uuidString).json")
        let (status, output) = try await ChildProcess.run(
            try TestEnvironment.parleyBinary(), ["bench"] + arguments + ["--json", json.path], timeout: timeout
        )
        let report = (try? JSONSerialization.jsonObject(with: Data(contentsOf: json))) as? [String: Any] ?? [:]
        return (status, output, report)
    }

    @Test func fanoutAcrossTwoGatewaysDeliversEverythingOnceAndInOrder() async throws {
        let gateways = try await self.gateways(2)
        let (status, output, report) = try await self.bench(
            // a debug build on a shared machine: the rate check is kept, with room for a slow tail
            ["fanout", "--users", "40", "--group-size", "10", "--rate", "200", "--duration", "3", "--min-acked-percent", "90"] + gateways.flatMap { ["--url", $0.baseURL] }
        )
        #expect(status == 0, "\(output)")
        #expect(report["passed"] as? Bool == true)
        let results = try #require(report["results"] as? [String: Any])
        #expect(results["sent"] as? Int == 600)
        #expect(results["acked"] as? Int == 600)
        #expect(results["delivered"] as? Int == 6000)
        for key in ["lost", "duplicated", "out_of_order", "send_errors", "unanswered_sends"] { #expect(results[key] as? Int == 0, "\(key)") }
        let latency = try #require(report["latency_ms"] as? [String: [String: Any]])
        #expect(latency["send_to_delivery"]?["count"] as? Int == 6000)
        #expect((latency["send_to_ack"]?["p99"] as? Double ?? 0) > 0)
        #expect(output.contains("PASSED"))
    }

    @Test func historyConnectionsAndLoginScenariosReport() async throws {
        let gateway = try await self.gateways(1)[0]
        let scratch = try TestEnvironment.scratchDirectory().appendingPathComponent("outbox-\(UUID().uuidString)")
        let mailer = try MailerProcess(environment: ["PARLEY_SMTP_URL": "", "PARLEY_MAIL_OUTBOX": scratch.path, "PARLEY_LOG_LEVEL": "warning"])
        defer { withExtendedLifetime(mailer) {} }

        let history = try await self.bench(["history", "--url", gateway.baseURL, "--messages", "120", "--readers", "2", "--duration", "1"])
        #expect(history.0 == 0, "\(history.1)")
        #expect(((history.2["latency_ms"] as? [String: [String: Any]])?["latest_page"]?["count"] as? Int ?? 0) > 0)
        #expect((history.2["results"] as? [String: Any])?["failed_requests"] as? Int == 0)

        let connections = try await self.bench([
            "connections", "--url", gateway.baseURL, "--pid", "\(gateway.child.pid)", "--connections", "60", "--per-user", "10", "--hold", "1",
            "--cpu", "watched+=\(gateway.child.pid)",
        ])
        #expect(connections.0 == 0, "\(connections.1)")
        let opened = try #require(connections.2["results"] as? [String: Any])
        #expect(opened["open_connections"] as? Int == 60)
        #expect((opened["rss_after_kib"] as? Int ?? 0) > 0)
        for key in ["gateway_cpu_ms_per_connect", "bench_cpu_ms_per_connect", "gateway_cpu_percent_connecting", "cpu_watched_ms_per_connect"] {
            #expect(((opened[key] as? NSNumber)?.doubleValue ?? -1) >= 0, "\(key) is reported")
        }

        let login = try await self.bench([
            "login", "--url", gateway.baseURL, "--users", "2", "--concurrency", "2", "--duration", "1", "--otp-outbox", scratch.path, "--codes", "5",
        ])
        #expect(login.0 == 0, "\(login.1)")
        let signIn = try #require(login.2["results"] as? [String: Any])
        #expect((signIn["logins"] as? Int ?? 0) > 0)
        #expect(signIn["failed_logins"] as? Int == 0)
        #expect(signIn["failed_verifies"] as? Int == 0)
        #expect(((login.2["latency_ms"] as? [String: [String: Any]])?["otp_verify"]?["count"] as? Int) == 5)
    }

    @Test func badArgumentsAndUnreachableGatewaysFailClearly() async throws {
        let (status, output) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["bench", "fanout", "--url", "ftp://example"])
        #expect(status != 0)
        #expect(output.contains("http://host:port"))
        let (badCPU, cpuMessage) = try await ChildProcess.run(try TestEnvironment.parleyBinary(), ["bench", "connections", "--pid", "1", "--cpu", "postgres"])
        #expect(badCPU != 0)
        #expect(cpuMessage.contains("--cpu must be NAME=PID"))
        let (noProcess, noProcessMessage) = try await ChildProcess.run(
            try TestEnvironment.parleyBinary(), ["bench", "connections", "--pid", "1", "--cpu", "postgres+=999999999"]
        )
        #expect(noProcess != 0)
        #expect(noProcessMessage.contains("no process 999999999"))
        let port = try TestEnvironment.freePort()
        let (refused, message) = try await ChildProcess.run(
            try TestEnvironment.parleyBinary(), ["bench", "history", "--url", "http://127.0.0.1:\(port)"], timeout: .seconds(30)
        )
        #expect(refused == 1)
        #expect(message.contains("parley: error:"), "\(message)")
    }
}
