import ArgumentParser
import Foundation
import HiredisNIO
import Logging
import NIOCore
import ParleyCore

/// `parley bench redis`: pipelined SET / PUBLISH throughput through one
/// HiredisNIO connection, to compare with `redis-benchmark -P 16`.
struct RedisBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Pipelined SET and PUBLISH throughput of the Redis client over one connection."
    )

    @OptionGroup var redis: RedisOptions

    @Option(help: "Commands per test.")
    var requests = 1_000_000

    @Option(help: "Commands per pipelined batch (as redis-benchmark -P).")
    var pipeline = 16

    @Option(help: "Batches in flight at once on the connection.")
    var depth = 64

    @Option(help: "Payload size in bytes (as redis-benchmark -d).")
    var dataSize = 3

    @Option(help: "Repetitions; the median is reported.")
    var runs = 3

    @Option(help: "Tests to run, comma-separated: set, publish.")
    var tests = "set,publish"

    @Option(help: "Write the results as JSON to this file.")
    var json: String?

    func run() async throws {
        try await runCommand {
            var values = ProcessInfo.processInfo.environment
            for case (let name, let value?) in self.redis.overlay { values[name] = value }
            let configuration = try RedisSettings.load(SettingsReader(values))
            let logger = Logger(label: "parley.bench")
            let connection = try await RedisConnection.connect(configuration: configuration, logger: logger)
            let payload = RedisArgument.bytes(ByteBuffer(repeating: UInt8(ascii: "x"), count: self.dataSize))
            var results: [[String: Any]] = []
            print("test      requests  pipeline  depth  median ops/s    runs (ops/s)                 max loop lag")
            for test in self.tests.split(separator: ",").map(String.init) {
                let command: RedisCommand
                switch test {
                case "set": command = RedisCommand("SET", ["bench:key", payload])
                case "publish": command = RedisCommand("PUBLISH", ["bench:channel", payload])
                default: throw ValidationError("unknown test \(test) (set, publish)")
                }
                var rates: [Double] = []
                var maxLag: Duration = .zero
                for _ in 0..<self.runs {
                    let (rate, lag) = try await self.measure(command, on: connection)
                    rates.append(rate)
                    maxLag = max(maxLag, lag)
                }
                let median = rates.sorted()[rates.count / 2]
                let runsText = rates.map { String(format: "%.0f", $0) }.joined(separator: ", ")
                print(
                    test.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + String(format: "%8d  %8d  %5d  %12.0f    %@    %@", self.requests, self.pipeline, self.depth, median, runsText, "\(maxLag)")
                )
                results.append([
                    "test": test, "requests": self.requests, "pipeline": self.pipeline, "depth": self.depth,
                    "median_ops_per_s": median, "runs_ops_per_s": rates, "max_event_loop_lag_ms": Double(maxLag.components.attoseconds) / 1e15 + Double(maxLag.components.seconds) * 1000,
                ])
            }
            await connection.close()
            if let json {
                let data = try JSONSerialization.data(withJSONObject: ["redis": results], options: [.prettyPrinted, .sortedKeys])
                try data.write(to: URL(fileURLWithPath: json))
            }
        }
    }

    /// Returns commands per second, and the worst delay seen by a 1 ms timer
    /// on the connection's event loop (how long the loop was blocked).
    private func measure(_ command: RedisCommand, on connection: RedisConnection) async throws -> (Double, Duration) {
        let batches = max(1, self.requests / self.pipeline)
        let batch = Array(repeating: command, count: self.pipeline)
        let lagProbe = LagProbe(eventLoop: connection.channel.eventLoop)
        let clock = ContinuousClock()
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            let perWorker = batches / self.depth
            for worker in 0..<self.depth {
                let count = perWorker + (worker < batches % self.depth ? 1 : 0)
                group.addTask {
                    for _ in 0..<count {
                        let replies = try await connection.pipeline(batch)
                        if case .error(let message) = replies.last { throw RedisError(.serverError, message) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = clock.now - start
        let lag = lagProbe.stop()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (Double(batches * self.pipeline) / seconds, lag)
    }
}

/// Schedules a task every millisecond on an event loop and records the
/// largest lateness: a loop blocked by a C call or a long callback shows here.
final class LagProbe: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private var task: RepeatedTask?
    private var last = NIODeadline.now()
    private var worst = TimeAmount.zero

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.task = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { [self] _ in
            let now = NIODeadline.now()
            let late = now - self.last - .milliseconds(1)
            if late > self.worst { self.worst = late }
            self.last = now
        }
    }

    func stop() -> Duration {
        try? self.eventLoop.submit { self.task?.cancel() }.wait()
        let worst = (try? self.eventLoop.submit { self.worst }.wait()) ?? .zero
        return .nanoseconds(worst.nanoseconds)
    }
}
