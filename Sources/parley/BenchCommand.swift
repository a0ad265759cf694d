import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure what the system does (throughput, latency, loss).",
        subcommands: [RedisBenchCommand.self]
    )
}
