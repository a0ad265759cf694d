import Foundation
public import Logging
import Metrics
public import ParleyCore
public import ServiceLifecycle
import Synchronization

/// Where the writer stores a batch: `ChatStore` in the gateway, a fake in
/// unit tests (a stalled or failing database).
public protocol MessageBatchStore: Sendable {
    /// Stores the batch in one transaction: one outcome per send, in order,
    /// or an error when nothing of the batch was stored.
    func send(batch: [NewMessage], deadline: Duration) async throws -> [SendOutcome]
}

extension ChatStore: MessageBatchStore {}

/// Where the writer announces what it stored: `ChatEventPublisher` (Redis)
/// in the gateway, a recorder in unit tests.
public protocol ChatEventPublishing: Sendable {
    /// Announces `events` in order; a failure only delays them (receivers
    /// catch up from PostgreSQL), so it is logged, not thrown.
    func publish(_ events: [ChatEvent], logger: Logger) async
}

extension ChatEventPublisher: ChatEventPublishing {}

/// Group commit for sends: concurrent sends share one transaction.
///
/// A send joins a queue (`SendQueue`). A batch takes, in arrival order, up
/// to `maxBatch` queued sends whose chats no batch in flight holds; up to
/// `maxInFlight` batches are written at once, so sends to different chats
/// never wait for each other, while a busy chat's sends wait for its batch
/// in flight and then go together in the next one — the batch grows
/// instead of another transaction queueing on the same row locks. A lone
/// send starts a batch at once, unless a batch started less than
/// `minInterval` ago: under load batches start at most that often and grow
/// meanwhile (each call has a fixed cost in PostgreSQL, so fewer, larger
/// batches spend less of it per message), while an idle writer adds no
/// delay. Each batch is one server-side call (one round trip,
/// `ChatStore.send(batch:deadline:)`).
///
/// After a batch commits, for each send in order the writer runs its
/// `onStored` (the WebSocket ack goes out there, before the message event),
/// then publishes the batch's messages (resends included) in one pipelined
/// Redis round trip (in seq order per chat), then completes the sends. A failed transaction
/// fails every send of its batch and stores none of them; the clients resend
/// with the same `client_id`. A batch that takes longer than `timeout` fails
/// the same way, so that one stalled batch never stops the writer; the
/// gateway's sessions wait at most 5 s for a row lock, so such a batch has
/// normally rolled back, and if it did commit, the resend publishes it.
///
/// The writer is a `Service`: its batch loops are children of `run()`, so
/// they stop with the process. On graceful shutdown it refuses new sends
/// (503 `unavailable`, nothing stored) and finishes the queued ones; on
/// cancellation it refuses new sends too, lets the batch being written
/// finish, and fails the queued ones the same way. A send before `run()`
/// starts waits for it.
public final class MessageWriter: Service {
    public typealias OnStored = @Sendable (MessageRecord) async -> Void

    struct Pending {
        let new: NewMessage
        let logger: Logger
        let onStored: OnStored
        let continuation: CheckedContinuation<(message: MessageRecord, created: Bool), any Error>
    }

    let store: any MessageBatchStore
    let publisher: any ChatEventPublishing
    let maxBatch: Int
    let minInterval: Duration
    let timeout: Duration
    private let state: Mutex<(queue: SendQueue<Pending>, stopped: Bool)>
    /// One element per batch loop to start (`SendQueue.enqueue` said so).
    private let starts: AsyncStream<Void>
    private let startsContinuation: AsyncStream<Void>.Continuation
    private let lastStart = Mutex(ContinuousClock.now - .seconds(1))
    private let batches = Mutex((count: 0, sends: 0))
    private let batchCounter = Counter(label: "parley_send_batches_total")
    private let batchSize = Recorder(label: "parley_send_batch_size", aggregate: true)

    public init(
        store: any MessageBatchStore, publisher: any ChatEventPublishing, maxBatch: Int = 500, maxInFlight: Int = 1, minInterval: Duration = .milliseconds(2),
        timeout: Duration = .seconds(10)
    ) {
        precondition(maxBatch > 0 && maxInFlight > 0)
        self.minInterval = minInterval
        self.timeout = timeout
        self.store = store
        self.publisher = publisher
        self.maxBatch = maxBatch
        self.state = Mutex((SendQueue(maxInFlight: maxInFlight), false))
        (self.starts, self.startsContinuation) = AsyncStream.makeStream()
    }

    /// Runs the batch loops until graceful shutdown (then finishes the
    /// queued sends) or cancellation (then fails the sends not written).
    public func run() async {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                // ends when the stream is finished (shutdown) and the starts
                // already asked for are taken, or when the task is cancelled
                for await _ in self.starts {
                    group.addTask { await self.drain() }
                }
            } onGracefulShutdown: {
                self.stop()
            }
            // shutdown or cancellation: no send is taken from now on (on shutdown the
            // batch loops finish the queue; cancelled, they stop after their batch)
            self.stop()
        }
        // what is still queued (cancelled, or a start that came after the stream
        // was finished) will not be written
        let left = self.state.withLock { state in state.queue.removeAll() }
        for pending in left { pending.continuation.resume(throwing: Self.notStored) }
    }

    /// Refuses sends from now on; the starts already asked for still run.
    private func stop() {
        self.state.withLock { $0.stopped = true }
        self.startsContinuation.finish()
    }

    static let notStored = ChatError.unavailable("the message was not stored; resend it with the same client_id", retryAfter: 1)

    /// Sends waiting for a batch (not those being written).
    public var queued: Int { self.state.withLock { $0.queue.items.count } }
    /// True once the writer refuses sends (shutting down).
    public var isStopped: Bool { self.state.withLock { $0.stopped } }

    /// Batches written and sends they carried, since start (for metrics and tests).
    public var written: (batches: Int, sends: Int) { self.batches.withLock { ($0.count, $0.sends) } }

    public func send(_ new: NewMessage, logger: Logger, onStored: @escaping OnStored) async throws -> (message: MessageRecord, created: Bool) {
        try await withCheckedThrowingContinuation { continuation in
            let pending = Pending(new: new, logger: logger, onStored: onStored, continuation: continuation)
            let accepted = self.state.withLock { state -> Bool? in
                guard !state.stopped else { return nil }
                return state.queue.enqueue(pending, chat: new.chatID)
            }
            switch accepted {
            case nil: continuation.resume(throwing: Self.notStored)
            // a batch loop of run(), not of this send: a send whose caller goes
            // away must not cancel the others' transaction
            case true?: self.startsContinuation.yield()
            case false?: break
            }
        }
    }

    private func drain() async {
        while true {
            // under load, batches start at most every minInterval and grow meanwhile;
            // only a batch taken counts as a start, so an idle writer adds no delay
            let wait = self.lastStart.withLock { $0 + self.minInterval - ContinuousClock.now }
            if wait > .zero { try? await Task.sleep(for: wait) }
            // cancelled: the batch being written (if any) has finished; no other one starts
            guard !Task.isCancelled else { return }
            let batch = self.state.withLock { $0.queue.nextBatch(max: self.maxBatch) }
            if batch.isEmpty { return }
            self.lastStart.withLock { $0 = .now }
            await self.write(batch)
            self.state.withLock { $0.queue.finished(chats: batch.map(\.new.chatID)) }
        }
    }

    private func write(_ batch: [Pending]) async {
        let outcomes: [SendOutcome]
        let sends = batch.map(\.new)
        do {
            outcomes = try await self.store.send(batch: sends, deadline: self.timeout)
        } catch {
            // PostgreSQL down, a lock wait over the limit, or the deadline: nothing of
            // the batch is stored (or, past the deadline, will be announced on resend)
            batch[0].logger.error("a batch of sends failed; failing its sends", metadata: ["sends": "\(batch.count)", "error": "\(error)"])
            for pending in batch { pending.continuation.resume(throwing: Self.notStored) }
            return
        }
        self.batches.withLock {
            $0.count += 1
            $0.sends += batch.count
        }
        self.batchCounter.increment()
        self.batchSize.record(batch.count)
        var events: [ChatEvent] = []
        for (pending, outcome) in zip(batch, outcomes) {
            guard case .success(let result) = outcome else { continue }
            await pending.onStored(result.message)
            // Resends too: if the first attempt committed but was reported as failed
            // (deadline), this is its only announcement. Receivers drop seqs they already have.
            events.append(.messageCreated(result.message))
        }
        // committed: a publish that fails only delays the events (clients catch up
        // from PostgreSQL); Redis commands time out on their own
        if !events.isEmpty { await self.publisher.publish(events, logger: batch[0].logger) }
        for (pending, outcome) in zip(batch, outcomes) {
            pending.continuation.resume(with: outcome.mapError { $0 as any Error })
        }
    }
}
