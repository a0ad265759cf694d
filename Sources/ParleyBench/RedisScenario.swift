public import Foundation
public import HiredisNIO
import Logging
import NIOCore

/// `parley bench redis`: pipelined SET / PUBLISH throughput through one
/// HiredisNIO connection, to compare with `redis-benchmark -P 16`.
public struct RedisScenario: Sendable {
    public enum Test: String, Sendable, CaseIterable {
        case set, publish
    }

    public struct Result: Sendable {
        public var test: Test
        public var requests: Int
        public var pipeline: Int
        public var depth: Int
        public var medianOpsPerSecond: Double
        public var runsOpsPerSecond: [Double]
        /// The worst delay a 1 ms timer on the connection's event loop saw.
        public var maxEventLoopLag: Duration
    }

    public var configuration: RedisConfiguration
    /// Commands per test.
    public var requests = 1_000_000
    /// Commands per pipelined batch (as redis-benchmark -P).
    public var pipeline = 16
    /// Batches in flight at once on the connection.
    public var depth = 64
    /// Payload size in bytes (as redis-benchmark -d).
    public var dataSize = 3
    /// Repetitions; the median is reported.
    public var runs = 3
    public var tests: [Test] = Test.allCases

    public init(configuration: RedisConfiguration) {
        self.configuration = configuration
    }

    public func run() async throws -> [Result] {
        guard self.requests > 0, self.pipeline > 0, self.depth > 0, self.runs > 0, self.dataSize >= 0 else {
            throw BenchError("requests, pipeline, depth and runs must be positive")
        }
        let connection = try await RedisConnection.connect(configuration: self.configuration, logger: Logger(label: "parley.bench"))
        let payload = RedisArgument.bytes(ByteBuffer(repeating: UInt8(ascii: "x"), count: self.dataSize))
        var results: [Result] = []
        do {
            for test in self.tests {
                let command: RedisCommand =
                    switch test {
                    case .set: RedisCommand("SET", ["bench:key", payload])
                    case .publish: .publish("bench:channel", payload)
                    }
                var rates: [Double] = []
                var maxLag: Duration = .zero
                for _ in 0..<self.runs {
                    let (rate, lag) = try await self.measure(command, on: connection)
                    rates.append(rate)
                    maxLag = max(maxLag, lag)
                }
                results.append(Result(
                    test: test, requests: self.requests, pipeline: self.pipeline, depth: self.depth,
                    medianOpsPerSecond: rates.sorted()[rates.count / 2], runsOpsPerSecond: rates, maxEventLoopLag: maxLag
                ))
            }
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
        return results
    }

    /// The results as the command prints them.
    public static func table(_ results: [Result]) -> String {
        var lines = ["test      requests  pipeline  depth  median ops/s    runs (ops/s)                 max loop lag"]
        for result in results {
            let runs = result.runsOpsPerSecond.map { String(format: "%.0f", $0) }.joined(separator: ", ")
            lines.append(
                result.test.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                    + String(format: "%8d  %8d  %5d  %12.0f    %@    %@", result.requests, result.pipeline, result.depth, result.medianOpsPerSecond, runs, "\(result.maxEventLoopLag)")
            )
        }
        return lines.joined(separator: "\n")
    }

    /// The results as JSON (`{"redis": [...]}`).
    public static func json(_ results: [Result]) throws -> Data {
        let objects: [[String: Any]] = results.map { result in
            [
                "test": result.test.rawValue, "requests": result.requests, "pipeline": result.pipeline, "depth": result.depth,
                "median_ops_per_s": result.medianOpsPerSecond, "runs_ops_per_s": result.runsOpsPerSecond,
                "max_event_loop_lag_ms": result.maxEventLoopLag.seconds * 1000,
            ]
        }
        return try JSONSerialization.data(withJSONObject: ["redis": objects], options: [.prettyPrinted, .sortedKeys])
    }

    /// Commands per second, and the worst delay seen by a 1 ms timer on the
    /// connection's event loop (how long the loop was blocked).
    private func measure(_ command: RedisCommand, on connection: RedisConnection) async throws -> (Double, Duration) {
        let batches = max(1, self.requests / self.pipeline)
        let batch = Array(repeating: command, count: self.pipeline)
        let lagProbe = LagProbe(eventLoop: connection.channel.eventLoop)
        let clock = ContinuousClock()
        let start = clock.now
        let depth = self.depth
        try await withThrowingTaskGroup(of: Void.self) { group in
            let perWorker = batches / depth
            for worker in 0..<depth {
                let count = perWorker + (worker < batches % depth ? 1 : 0)
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
        return (Double(batches * self.pipeline) / elapsed.seconds, lag)
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
