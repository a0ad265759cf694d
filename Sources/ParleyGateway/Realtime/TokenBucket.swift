/// At most `capacity` events at once, refilled at `perSecond`: the budget of
/// one socket's frames (a sliding budget in O(1), no list of timestamps). Pure.
struct TokenBucket {
    let capacity: Double
    let perSecond: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant

    init(capacity: Int, perSecond: Int, now: ContinuousClock.Instant = .now) {
        self.capacity = Double(capacity)
        self.perSecond = Double(perSecond)
        self.tokens = Double(capacity)
        self.last = now
    }

    /// Takes one token if there is one.
    mutating func take(now: ContinuousClock.Instant = .now) -> Bool {
        let elapsed = now - self.last
        self.last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        self.tokens = min(self.capacity, self.tokens + seconds * self.perSecond)
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }

    /// How long after the last `take` until a token is there.
    var untilNextToken: Duration {
        .nanoseconds(Int64(max(0, 1 - self.tokens) / self.perSecond * 1e9) + 1)
    }
}
