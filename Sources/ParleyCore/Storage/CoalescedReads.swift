import Synchronization

/// Many callers' reads of one kind, answered by one statement per batch:
/// while a batch's statement runs, new requests queue, and the next batch
/// takes them all (up to `maxBatch` keys), the way a group commit takes
/// writes. A lone request starts its statement at once: batches form only
/// when requests arrive faster than statements finish (a reconnect storm),
/// and then each statement serves many. Up to `maxInFlight` statements run
/// at once.
///
/// A request is only ever answered by a statement that started after the
/// request was made, so a caller sees everything committed before it asked,
/// as with a statement of its own (the realtime engine relies on this: it
/// reads a user's chats again once its subscriptions are in place).
///
/// A request waits in the queue at most `maxWait`: one still queued past that
/// when a batch is taken fails with `DatabaseUnavailable` instead of joining
/// it. With `maxWait` the statements' deadline, a caller has its answer (or
/// an error) within two deadlines, however long the queue behind a slow
/// PostgreSQL.
public final class CoalescedReads<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    public typealias Read = @Sendable ([Key]) async throws -> [Key: Value]

    private struct Waiter {
        let continuation: CheckedContinuation<Value, any Error>
        let since: ContinuousClock.Instant
    }

    private let queue: Mutex<CoalescingQueue<Key, Waiter>>
    private let maxBatch: Int
    private let maxWait: Duration
    private let missing: Value
    private let read: Read
    private let now: @Sendable () -> ContinuousClock.Instant

    /// `read` returns the values of the keys it was given; a key it leaves
    /// out gets `missing` (a user in no chat: no rows).
    /// `now` is the clock a request's wait is measured on (tests move it
    /// themselves: a busy machine can delay a batch's task past a short
    /// wait, which a test must not mistake for a slow statement).
    public convenience init(maxInFlight: Int, maxBatch: Int, maxWait: Duration, missing: Value, read: @escaping Read) {
        self.init(maxInFlight: maxInFlight, maxBatch: maxBatch, maxWait: maxWait, missing: missing, now: { .now }, read: read)
    }

    init(maxInFlight: Int, maxBatch: Int, maxWait: Duration, missing: Value, now: @escaping @Sendable () -> ContinuousClock.Instant, read: @escaping Read) {
        precondition(maxInFlight > 0 && maxBatch > 0)
        self.queue = Mutex(CoalescingQueue(maxInFlight: maxInFlight))
        self.maxBatch = maxBatch
        self.maxWait = maxWait
        self.missing = missing
        self.now = now
        self.read = read
    }

    public func value(of key: Key) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let waiter = Waiter(continuation: continuation, since: self.now())
            if self.queue.withLock({ $0.enqueue(key, waiter) }) {
                Task { await self.runBatches() }
            }
        }
    }

    /// Requests waiting for a batch to take them (for tests).
    var waiting: Int { self.queue.withLock { $0.waiting.values.reduce(0) { $0 + $1.count } } }

    /// One batch after another until nothing is queued.
    private func runBatches() async {
        while true {
            let taken = self.queue.withLock { $0.nextBatch(max: self.maxBatch) }
            if taken.isEmpty { return }
            // who waited too long already is answered now, not after another statement
            let now = self.now()
            var batch: [(key: Key, waiters: [Waiter])] = []
            for (key, waiters) in taken {
                let (late, current) = (waiters.filter { now - $0.since > self.maxWait }, waiters.filter { now - $0.since <= self.maxWait })
                for waiter in late { waiter.continuation.resume(throwing: DatabaseUnavailable("no answer within \(self.maxWait)")) }
                if !current.isEmpty { batch.append((key, current)) }
            }
            if batch.isEmpty { continue }
            do {
                let values = try await self.read(batch.map(\.key))
                for (key, waiters) in batch {
                    let value = values[key] ?? self.missing
                    for waiter in waiters { waiter.continuation.resume(returning: value) }
                }
            } catch {
                for waiter in batch.flatMap(\.waiters) { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}

/// The queue of `CoalescedReads`: pure, kept under its lock.
///
/// - `enqueue` says whether to start another batch loop (a slot is free).
/// - `nextBatch` takes the queued keys in arrival order, up to `max`
///   distinct ones, each with every waiter queued for it; an empty batch
///   ends the loop that asked (its slot is free again).
struct CoalescingQueue<Key: Hashable, Waiter> {
    let maxInFlight: Int
    private(set) var waiting: [Key: [Waiter]] = [:]
    private(set) var order: [Key] = []
    private(set) var inFlight = 0

    init(maxInFlight: Int) {
        self.maxInFlight = maxInFlight
    }

    mutating func enqueue(_ key: Key, _ waiter: Waiter) -> Bool {
        if self.waiting[key] == nil { self.order.append(key) }
        self.waiting[key, default: []].append(waiter)
        guard self.inFlight < self.maxInFlight else { return false }
        self.inFlight += 1
        return true
    }

    mutating func nextBatch(max: Int) -> [(key: Key, waiters: [Waiter])] {
        guard !self.order.isEmpty else {
            self.inFlight -= 1
            return []
        }
        let keys = self.order.prefix(max)
        self.order.removeFirst(keys.count)
        return keys.map { key in (key, self.waiting.removeValue(forKey: key) ?? []) }
    }
}
