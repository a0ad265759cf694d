public import Foundation

/// `parley bench connections`: opens `connections` idle authenticated
/// WebSockets against one gateway (`perUser` per registered user), holds
/// them, and reports the gateway's resident memory before and after, per
/// connection, the connect rate, and the CPU time the gateway and this
/// load generator spent per connect (the rate depends on what else shares
/// the cores; the CPU per connect much less). Memory and CPU come from /proc
/// of the gateway process (`pid`, on the same machine).
public struct ConnectionsScenario: Sendable {
    public var url: URL
    public var pid: Int32
    public var connections = 10_000
    public var perUser = 50
    public var hold: Duration = .seconds(10)
    /// Handshakes in flight at once.
    public var width = 64
    /// Other processes whose CPU per connect is reported (PostgreSQL, Redis).
    public var watched: [WatchedProcess] = []

    public init(url: URL, pid: Int32) {
        self.url = url
        self.pid = pid
    }

    public func run() async throws -> BenchReport {
        guard self.connections > 0, self.perUser > 0 else { throw BenchError("connections and per-user must be positive") }
        _ = try Self.residentKiB(self.pid)
        let progress = Progress()
        let run = String(UUID().uuidString.prefix(8)).lowercased()
        let userCount = (self.connections + self.perUser - 1) / self.perUser
        let users = try await parallel(userCount, width: 8, urls: [self.url], progress: progress, label: "registering users") { api, index in
            try await api.register(email: "bench-conn-\(run)-\(index)@bench.example", name: "bench \(index)")
        }
        try await Task.sleep(for: .seconds(2))  // let the registrations' memory settle
        let before = try Self.residentKiB(self.pid)
        let gatewayCPU = ProcessCPU.seconds(self.pid, children: false)
        let ownCPU = ProcessCPU.seconds(getpid(), children: false)
        let watchedCPU = self.watched.map(\.seconds)
        let started = ContinuousClock.now
        let url = self.url
        let perUser = self.perUser
        let sockets = try await parallel(self.connections, width: self.width, urls: [url], progress: progress, label: "connecting") { _, index in
            try await BenchSocket.open(base: url, token: users[index / perUser].token) { _ in }
        }
        let connectTime = ContinuousClock.now - started
        let gatewayConnectCPU = ProcessCPU.seconds(self.pid, children: false) - gatewayCPU
        let ownConnectCPU = ProcessCPU.seconds(getpid(), children: false) - ownCPU
        let watchedConnectCPU = zip(self.watched, watchedCPU).map { ($0.name, $0.seconds - $1) }
        progress.done()
        progress.show("holding \(sockets.count) connections for \(self.hold)")
        try await Task.sleep(for: self.hold)
        let after = try Self.residentKiB(self.pid)
        let closedEarly = sockets.filter { $0.isClosed }.count
        await withTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: sockets.count, by: 500) {
                group.addTask { for socket in sockets[chunk..<min(chunk + 500, sockets.count)] { await socket.close() } }
            }
        }
        try await Task.sleep(for: .seconds(2))
        let released = try Self.residentKiB(self.pid)

        var report = BenchReport(scenario: "connections")
        report.parameters = [("connections", .count(self.connections)), ("per_user", .count(self.perUser)), ("hold_s", .number(self.hold.seconds, ""))]
        let perConnection = Double(after - before) / Double(max(1, sockets.count - closedEarly))
        report.results = [
            ("open_connections", .count(sockets.count - closedEarly)),
            ("connects_per_s", .rate(Double(self.connections) / connectTime.seconds)),
            ("gateway_cpu_ms_per_connect", .number(gatewayConnectCPU * 1000 / Double(self.connections), "ms")),
            ("gateway_cpu_percent_connecting", .number(gatewayConnectCPU * 100 / connectTime.seconds, "%")),
            ("bench_cpu_ms_per_connect", .number(ownConnectCPU * 1000 / Double(self.connections), "ms")),
        ]
        report.results += watchedConnectCPU.map { name, used in ("cpu_\(name)_ms_per_connect", .number(used * 1000 / Double(self.connections), "ms")) }
        report.results += [
            ("rss_before_kib", .count(before)),
            ("rss_after_kib", .count(after)),
            ("rss_per_connection_kib", .number(perConnection, "KiB")),
            ("rss_after_close_kib", .count(released)),
        ]
        if closedEarly > 0 { report.failures.append("\(closedEarly) connections were closed by the server while idle") }
        return report
    }

    /// VmRSS of a process, in KiB.
    static func residentKiB(_ pid: Int32) throws -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else {
            throw BenchError("cannot read /proc/\(pid)/status: is the gateway's pid right and on this machine?")
        }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            if let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) }) { return value }
        }
        throw BenchError("no VmRSS in /proc/\(pid)/status")
    }
}
