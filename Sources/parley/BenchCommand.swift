import ArgumentParser
import Foundation
import ParleyBench

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure what the system does (throughput, latency, loss).",
        discussion: "Scenarios talk to running gateways over REST and WebSocket, as clients do, and create their own users and chats. Each prints a table, writes JSON with --json, and exits 1 when the run failed (lost, duplicated or reordered messages, errors).",
        subcommands: [FanoutBenchCommand.self, ConnectionsBenchCommand.self, HistoryBenchCommand.self, SearchBenchCommand.self, LoginBenchCommand.self, RedisBenchCommand.self]
    )
}

/// `--url` (repeatable) and `--json`.
struct BenchOptions: ParsableArguments {
    @Option(name: .customLong("url"), help: "Gateway base URL; repeat for several gateways (default http://127.0.0.1:8080).")
    var urls: [String] = []

    @Option(help: "Write the report as JSON to this file.")
    var json: String?

    func gatewayURLs() throws -> [URL] {
        let raw = self.urls.isEmpty ? ["http://127.0.0.1:8080"] : self.urls
        return try raw.map { text in
            guard let url = URL(string: text.hasSuffix("/") ? String(text.dropLast()) : text), url.scheme == "http", url.host != nil else {
                throw ValidationError("--url \(text): expected http://host:port")
            }
            return url
        }
    }

    /// Prints the report, writes the JSON, and fails the command when the run failed.
    func finish(_ report: BenchReport) throws {
        print(report.table(), terminator: "")
        if let json = self.json { try report.json().write(to: URL(fileURLWithPath: json)) }
        if !report.passed { throw ExitCode.failure }
    }
}

/// The processes of `--cpu NAME=PID` / `NAME+=PID` options.
func watchedProcesses(_ options: [String]) throws -> [WatchedProcess] {
    try options.map { text in
        guard let process = WatchedProcess(text) else { throw ValidationError("--cpu must be NAME=PID or NAME+=PID (got \"\(text)\")") }
        // a wrong pid would read as no CPU at all
        guard process.isRunning else { throw ValidationError("--cpu \(text): no process \(process.pid) on this machine") }
        return process
    }
}

struct FanoutBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Groups sending at a fixed aggregate rate (open loop); throughput, latency, and loss/duplication/reordering checks."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Users (one WebSocket each), spread over the URLs.") var users = 1000
    @Option(help: "Members per group.") var groupSize = 10
    @Option(help: "Messages per second, all senders together.") var rate = 1000.0
    @Option(help: "Seconds of sending.") var duration = 60.0
    @Option(help: "Seconds to wait after the last send for acks and deliveries.") var drain = 20.0
    @Option(help: "The run is not sustained (exit 1) if p99 send→delivery exceeds this (ms).") var maxP99Ms: Double?
    @Option(help: "The run is not sustained (exit 1) if less than this share of the offered rate is acknowledged (percent).")
    var minAckedPercent = 98.0
    @Option(help: "Report a process's CPU use while sending: NAME=PID, or NAME+=PID with its children (PostgreSQL's postmaster). Repeatable.")
    var cpu: [String] = []

    func run() async throws {
        var scenario = FanoutScenario(urls: try self.options.gatewayURLs())
        scenario.maxP99 = self.maxP99Ms.map { .milliseconds(Int64($0)) }
        guard (0...100).contains(self.minAckedPercent) else { throw ValidationError("--min-acked-percent must be between 0 and 100") }
        scenario.minimumAckedShare = self.minAckedPercent / 100
        scenario.watched = try watchedProcesses(self.cpu)
        scenario.users = self.users
        scenario.groupSize = self.groupSize
        scenario.rate = self.rate
        scenario.duration = .seconds(self.duration)
        scenario.drainTimeout = .seconds(self.drain)
        try await runCommand { try self.options.finish(try await scenario.run()) }
    }
}

struct ConnectionsBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Idle authenticated WebSockets on one gateway: resident memory per connection and connect rate."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "The gateway's process id (its memory is read from /proc).") var pid: Int32
    @Option(help: "Connections to open.") var connections = 10_000
    @Option(help: "Connections per user (the gateway's PARLEY_WS_CONNECTIONS_PER_USER must allow it).") var perUser = 50
    @Option(help: "Seconds to hold the connections open before measuring.") var hold = 10.0
    @Option(help: "Report a process's CPU per connect as well (PostgreSQL, Redis): NAME=PID, or NAME+=PID with its children. Repeatable.")
    var cpu: [String] = []

    func run() async throws {
        let urls = try self.options.gatewayURLs()
        guard urls.count == 1 else { throw ValidationError("connections measures one gateway: give one --url") }
        var scenario = ConnectionsScenario(url: urls[0], pid: self.pid)
        scenario.connections = self.connections
        scenario.perUser = self.perUser
        scenario.hold = .seconds(self.hold)
        scenario.watched = try watchedProcesses(self.cpu)
        try await runCommand { try self.options.finish(try await scenario.run()) }
    }
}

struct HistoryBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Concurrent readers of the latest page of 50 of a large chat."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Messages in the chat.") var messages = 10_000
    @Option(help: "Concurrent readers.") var readers = 8
    @Option(help: "Seconds of reading.") var duration = 20.0

    func run() async throws {
        var scenario = HistoryScenario(urls: try self.options.gatewayURLs())
        scenario.messages = self.messages
        scenario.readers = self.readers
        scenario.duration = .seconds(self.duration)
        try await runCommand { try self.options.finish(try await scenario.run()) }
    }
}

struct LoginBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Password logins/s (Argon2id) and, with --otp-outbox, one-time code verifications/s."
    )

    @OptionGroup var options: BenchOptions
    @Option(help: "Users to log in as.") var users = 16
    @Option(help: "Concurrent clients.") var concurrency = 4
    @Option(help: "Seconds of logging in.") var duration = 10.0
    @Option(help: "The outbox folder of a `parley mailer` without SMTP: codes are read from the mails there.") var otpOutbox: String?
    @Option(help: "One-time codes to request and verify.") var codes = 200

    func run() async throws {
        var scenario = LoginScenario(urls: try self.options.gatewayURLs())
        scenario.users = self.users
        scenario.concurrency = self.concurrency
        scenario.duration = .seconds(self.duration)
        scenario.outbox = self.otpOutbox.map { URL(fileURLWithPath: $0) }
        scenario.codes = self.codes
        try await runCommand { try self.options.finish(try await scenario.run()) }
    }
}
