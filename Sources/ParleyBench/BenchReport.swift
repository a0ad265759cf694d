public import Foundation

/// What a scenario measured: printed as a table, written as JSON.
public struct BenchReport: Sendable {
    public enum Value: Sendable {
        case count(Int)
        case rate(Double)
        case number(Double, String)
        case text(String)

        var json: Any {
            switch self {
            case .count(let value): return value
            case .rate(let value): return (value * 10).rounded() / 10
            case .number(let value, _): return (value * 1000).rounded() / 1000
            case .text(let value): return value
            }
        }

        var display: String {
            switch self {
            case .count(let value): return Self.grouped(Double(value), decimals: 0)
            case .rate(let value): return Self.grouped(value, decimals: 0) + "/s"
            case .number(let value, let unit): return Self.grouped(value, decimals: value < 100 ? 2 : 0) + (unit.isEmpty ? "" : " \(unit)")
            case .text(let value): return value
            }
        }

        /// `1234567.891` → "1,234,567.89" (decimals 2).
        static func grouped(_ value: Double, decimals: Int) -> String {
            let text = String(format: "%.\(decimals)f", abs(value))
            let parts = text.split(separator: ".", maxSplits: 1)
            var integer = String(parts[0])
            var groups: [String] = []
            while integer.count > 3 {
                groups.insert(String(integer.suffix(3)), at: 0)
                integer.removeLast(3)
            }
            groups.insert(integer, at: 0)
            let sign = value < 0 && text.contains(where: { $0 != "0" && $0 != "." }) ? "-" : ""
            return sign + groups.joined(separator: ",") + (parts.count > 1 ? "." + parts[1] : "")
        }
    }

    public let scenario: String
    public var parameters: [(String, Value)] = []
    public var results: [(String, Value)] = []
    public var latencies: [(String, Latency.Summary)] = []
    /// Why the run failed (lost messages, errors…); empty when it passed.
    public var failures: [String] = []

    public init(scenario: String) {
        self.scenario = scenario
    }

    public var passed: Bool { self.failures.isEmpty }

    public func table() -> String {
        var lines = ["", "parley bench \(self.scenario)"]
        lines.append("  " + self.parameters.map { "\($0.0)=\($0.1.display)" }.joined(separator: " "))
        let width = max(24, (self.results.map(\.0) + self.latencies.map(\.0)).map(\.count).max() ?? 0)
        for (name, value) in self.results {
            lines.append("  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value.display)
        }
        if !self.latencies.isEmpty {
            let header = ["count", "p50", "p90", "p99", "p99.9", "max"].map { $0.leftPadded(10) }.joined()
            lines.append("")
            lines.append("  " + "latency (ms)".padding(toLength: width, withPad: " ", startingAt: 0) + header)
            for (name, summary) in self.latencies {
                let cells = [String(summary.count)] + [summary.p50, summary.p90, summary.p99, summary.p999, summary.max].map { String(format: "%.2f", $0) }
                lines.append("  " + name.padding(toLength: width, withPad: " ", startingAt: 0) + cells.map { $0.leftPadded(10) }.joined())
            }
        }
        lines.append("")
        lines.append(self.passed ? "  PASSED" : "  FAILED: " + self.failures.joined(separator: "; "))
        return lines.joined(separator: "\n") + "\n"
    }

    public func json() throws -> Data {
        var latency: [String: Any] = [:]
        for (name, summary) in self.latencies {
            latency[name] = [
                "count": summary.count, "p50": summary.p50, "p90": summary.p90, "p99": summary.p99,
                "p99_9": summary.p999, "max": summary.max, "mean": (summary.mean * 1000).rounded() / 1000,
            ]
        }
        let object: [String: Any] = [
            "scenario": self.scenario,
            "parameters": Dictionary(uniqueKeysWithValues: self.parameters.map { ($0.0, $0.1.json) }),
            "results": Dictionary(uniqueKeysWithValues: self.results.map { ($0.0, $0.1.json) }),
            "latency_ms": latency,
            "passed": self.passed,
            "failures": self.failures,
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        self.count >= width ? self : String(repeating: " ", count: width - self.count) + self
    }
}
