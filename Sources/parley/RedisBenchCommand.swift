import ArgumentParser
import Foundation
import ParleyBench
import ParleyCore

/// `parley bench redis` (the scenario is `RedisScenario` in ParleyBench).
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
            var scenario = RedisScenario(configuration: try RedisSettings.load(SettingsReader(values)))
            scenario.requests = self.requests
            scenario.pipeline = self.pipeline
            scenario.depth = self.depth
            scenario.dataSize = self.dataSize
            scenario.runs = self.runs
            scenario.tests = try self.tests.split(separator: ",").map { name in
                guard let test = RedisScenario.Test(rawValue: String(name)) else { throw ValidationError("unknown test \(name) (set, publish)") }
                return test
            }
            let results = try await scenario.run()
            print(RedisScenario.table(results))
            if let json { try RedisScenario.json(results).write(to: URL(fileURLWithPath: json)) }
        }
    }
}
