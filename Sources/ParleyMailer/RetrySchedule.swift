import Metrics
import ParleyCore

/// When to try a failed delivery again: `first`, twice that, four times…
/// up to `cap`, with up to a quarter more of jitter, never before what the
/// receiver asked (Retry-After); no more once that falls past `window`
/// after the first attempt. Push and webhooks retry by it.
struct RetrySchedule: Sendable {
    var first: Duration
    var cap: Duration
    var window: Duration

    /// The Unix ms of the next attempt after `attempt` (0 = the first) failed, or nil: give up.
    func next(attempt: Int, firstAt: Int64, notBefore: Duration? = nil, now: Int64) -> Int64? {
        let backoff = min(self.first.milliseconds << min(attempt, 30), self.cap.milliseconds)
        let delay = max(backoff + Int64.random(in: 0...max(backoff / 4, 0)), notBefore?.milliseconds ?? 0)
        let dueAt = now + delay
        return dueAt <= firstAt + self.window.milliseconds ? dueAt : nil
    }
}

/// `parley_notifications_total{channel, outcome}`: what each channel did.
enum NotificationMetrics {
    static func count(_ channel: String, _ outcome: String, by amount: Int = 1) {
        Counter(label: "parley_notifications_total", dimensions: [("channel", channel), ("outcome", outcome)]).increment(by: amount)
    }
}
