/// Capped exponential backoff with jitter: attempt n waits a random time in
/// [delay/2, delay] where delay = min(cap, base · 2ⁿ).
public struct Backoff: Sendable, Hashable {
    public var base: Duration
    public var cap: Duration

    public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(5)) {
        self.base = base
        self.cap = cap
    }

    public func delay(attempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponent = min(max(attempt, 0), 30)
        let uncapped = self.base * (1 << exponent)
        let delay = min(uncapped, self.cap)
        return delay * (0.5 + 0.5 * min(max(random, 0), 1))
    }
}
