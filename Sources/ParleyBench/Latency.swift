import Histogram

/// Latencies in microseconds, in an HdrHistogram (3 significant digits, up
/// to 10 minutes), summarized as percentiles in milliseconds.
public struct Latency: Sendable {
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    public mutating func record(_ duration: Duration) {
        let micros = max(1, duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000)
        _ = self.histogram.record(UInt64(min(micros, 600_000_000)))
    }

    public mutating func add(_ other: Latency) { self.histogram.add(other.histogram) }

    public var count: UInt64 { self.histogram.totalCount }

    public var summary: Summary {
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
        guard self.count > 0 else { return Summary(count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0) }
        return Summary(
            count: self.count,
            p50: ms(self.histogram.valueAtPercentile(50)), p90: ms(self.histogram.valueAtPercentile(90)),
            p99: ms(self.histogram.valueAtPercentile(99)), p999: ms(self.histogram.valueAtPercentile(99.9)),
            max: ms(self.histogram.max), mean: self.histogram.mean / 1000
        )
    }

    /// Percentiles in milliseconds.
    public struct Summary: Sendable, Codable, Equatable {
        public var count: UInt64
        public var p50, p90, p99, p999, max, mean: Double

        enum CodingKeys: String, CodingKey {
            case count, p50, p90, p99, p999 = "p99_9", max, mean
        }
    }
}
