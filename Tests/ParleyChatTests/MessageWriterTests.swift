import Foundation
import Logging
import ParleyChat
import ParleyCore
import ParleyTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// The group-commit writer against a fake store and a recording publisher:
/// batching, the order of ack, event and completion, a stalled store, and
/// how the writer stops (graceful shutdown and cancellation).
@Suite struct MessageWriterTests {
    static let logger = Logger(label: "writer-test")

    /// Sends to `chat` from one sender, each with its own client id.
    static func new(_ chat: UUID, _ body: String = "x") -> NewMessage {
        NewMessage(chatID: chat, senderID: UUID(), clientID: UUID(), body: body)
    }

    @Test func concurrentSendsShareBatchesAndEachIsAckedBeforeItsEventAndCompletedAfterIt() async throws {
        let store = FakeBatchStore()
        let log = EventLog()
        let writer = MessageWriter(store: store, publisher: log, maxBatch: 500, minInterval: .milliseconds(5))
        let chats = [UUID(), UUID()]
        let count = 100
        try await whileRunning({ await writer.run() }) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<count {
                    group.addTask {
                        let new = Self.new(chats[i % 2], "m\(i)")
                        let result = try await writer.send(new, logger: Self.logger) { message in log.record("ack \(message.id)") }
                        #expect(result.created && result.message.clientID == new.clientID)
                        log.record("done \(result.message.id)")
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(writer.written.sends == count)
        #expect(writer.written.batches < count / 4, "\(writer.written.batches) batches for \(count) concurrent sends")
        // every seq once, per chat in the order of the events
        let events = log.messages
        for chat in chats {
            #expect(events.filter { $0.chatID == chat }.map(\.seq) == Array(1...Int64(count / 2)))
        }
        let entries = log.entries
        for message in events {
            let ack = try #require(entries.firstIndex(of: "ack \(message.id)"))
            let event = try #require(entries.firstIndex(of: "event \(message.id)"))
            let done = try #require(entries.firstIndex(of: "done \(message.id)"))
            #expect(ack < event && event < done)
        }
    }

    @Test func aRefusedSendFailsAloneAndAResendIsAnnouncedAgain() async throws {
        let store = FakeBatchStore()
        let log = EventLog()
        let writer = MessageWriter(store: store, publisher: log)
        let chat = UUID()
        try await whileRunning({ await writer.run() }) {
            await #expect(throws: ChatError.chatNotFound) {
                try await writer.send(Self.new(FakeBatchStore.unknownChat), logger: Self.logger) { _ in Issue.record("nothing was stored") }
            }
            let first = Self.new(chat)
            let stored = try await writer.send(first, logger: Self.logger) { _ in }
            let resent = try await writer.send(first, logger: Self.logger) { _ in }
            #expect(stored.created && !resent.created && resent.message.id == stored.message.id)
        }
        // the resend is published too: it may be the only announcement of a commit reported as failed
        #expect(log.messages.map(\.seq) == [1, 1])
    }

    @Test func aStalledStoreFailsItsBatchAndTheWriterGoesOn() async throws {
        let store = FakeBatchStore()
        store.stalled = true
        let log = EventLog()
        let writer = MessageWriter(store: store, publisher: log, timeout: .milliseconds(200))
        try await whileRunning({ await writer.run() }) {
            for _ in 0..<3 {
                let started = ContinuousClock.now
                let error = await #expect(throws: ChatError.self) {
                    try await writer.send(Self.new(UUID()), logger: Self.logger) { _ in Issue.record("nothing was stored") }
                }
                #expect(error?.code == .unavailable && error?.retryAfter == 1)
                // the store never answers: without the timeout this would never end (the bound is loose for loaded machines)
                #expect(ContinuousClock.now - started < .seconds(10), "each send fails after the timeout, none waits for another")
            }
            #expect(writer.written.batches == 0)
            store.stalled = false
            let stored = try await writer.send(Self.new(UUID()), logger: Self.logger) { _ in }
            #expect(stored.created)
        }
        #expect(log.messages.count == 1)
    }

    @Test func gracefulShutdownFinishesTheQueuedSendsAndRefusesNewOnes() async throws {
        let store = FakeBatchStore()
        store.gate.close()
        let log = EventLog()
        let writer = MessageWriter(store: store, publisher: log)
        let services = ServiceGroup(services: [writer], logger: Self.logger)
        let chat = UUID()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            // the first send's batch is in the store; the second waits for it (same chat)
            group.addTask { _ = try await writer.send(Self.new(chat, "first"), logger: Self.logger) { _ in } }
            try await eventually { store.batchesEntered == 1 }
            group.addTask { _ = try await writer.send(Self.new(chat, "second"), logger: Self.logger) { _ in } }
            try await eventually { writer.queued == 1 }
            await services.triggerGracefulShutdown()
            try await eventually { writer.isStopped }
            let refused = await #expect(throws: ChatError.self) {
                try await writer.send(Self.new(chat, "late"), logger: Self.logger) { _ in }
            }
            #expect(refused?.code == .unavailable)
            store.gate.open()
            try await group.waitForAll()
        }
        #expect(log.messages.map(\.body) == ["first", "second"])
    }

    @Test func cancellationLetsTheBatchInTheStoreFinishAndFailsTheRest() async throws {
        let store = FakeBatchStore()
        store.gate.close()  // the batch in the store ignores cancellation, as PostgreSQL does
        let writer = MessageWriter(store: store, publisher: EventLog())
        let chat = UUID()
        let running = Task { await writer.run() }
        let inStore = Task { try await writer.send(Self.new(chat, "in the store"), logger: Self.logger) { _ in } }
        try await eventually { store.batchesEntered == 1 }
        let queued = Task { try await writer.send(Self.new(chat, "queued"), logger: Self.logger) { _ in } }
        try await eventually { writer.queued == 1 }
        running.cancel()
        try await eventually { writer.isStopped }
        let late = await #expect(throws: ChatError.self) { try await writer.send(Self.new(chat, "late"), logger: Self.logger) { _ in } }
        #expect(late?.code == .unavailable, "a cancelled writer takes no send")
        store.gate.open()
        await running.value
        #expect(try await inStore.value.message.seq == 1, "the batch under way is written")
        let failure = await #expect(throws: ChatError.self) { try await queued.value }
        #expect(failure?.code == .unavailable, "the queued send is failed, not written")
        #expect(writer.written.batches == 1 && store.batchesEntered == 1)
    }
}

/// A store in memory: seqs per chat, idempotent client ids, one refusal
/// (`unknownChat`), and, on demand, a stall (until the batch's deadline,
/// as `ChatStore` does) or a gate that holds batches until opened.
final class FakeBatchStore: MessageBatchStore {
    static let unknownChat = UUID()

    private struct State {
        var lastSeq: [UUID: Int64] = [:]
        var byClientID: [UUID: MessageRecord] = [:]
        var batchesEntered = 0
        var stalled = false
    }

    private let state = Mutex(State())
    let gate = Gate()

    var batchesEntered: Int { self.state.withLock { $0.batchesEntered } }
    var stalled: Bool {
        get { self.state.withLock { $0.stalled } }
        set { self.state.withLock { $0.stalled = newValue } }
    }

    func send(batch: [NewMessage], deadline: Duration) async throws -> [SendOutcome] {
        let stalled = self.state.withLock { state in
            state.batchesEntered += 1
            return state.stalled
        }
        if stalled {
            try await withDeadline(deadline) { try await Task.sleep(for: .seconds(3600)) }
        }
        await self.gate.wait()
        return self.state.withLock { state in
            batch.map { new -> SendOutcome in
                if new.chatID == Self.unknownChat { return .failure(.chatNotFound) }
                if let earlier = state.byClientID[new.clientID] { return .success((earlier, false)) }
                let seq = state.lastSeq[new.chatID, default: 0] + 1
                state.lastSeq[new.chatID] = seq
                let message = MessageRecord(new, seq: seq)
                state.byClientID[new.clientID] = message
                return .success((message, true))
            }
        }
    }
}

/// Holds callers of `wait` while closed, whether or not their task is
/// cancelled (as a query PostgreSQL is running does not stop for it).
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((true, []))

    func close() { self.state.withLock { $0.open = false } }

    func open() {
        let waiters = self.state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let open = self.state.withLock { state in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }
}

/// The publisher of the tests: records events, and lines of a shared log.
final class EventLog: ChatEventPublishing {
    private let log = Mutex<(entries: [String], messages: [MessageRecord])>(([], []))

    func record(_ entry: String) { self.log.withLock { $0.entries.append(entry) } }
    var entries: [String] { self.log.withLock { $0.entries } }
    var messages: [MessageRecord] { self.log.withLock { $0.messages } }

    func publish(_ events: [ChatEvent], logger: Logger) async {
        self.log.withLock { log in
            for case .messageCreated(let message) in events {
                log.messages.append(message)
                log.entries.append("event \(message.id)")
            }
        }
    }
}
