import Foundation
import HiredisNIO
import Logging
import Metrics
import Synchronization
import ParleyChat

/// The Redis channels this process needs, kept incrementally: each
/// channel's local followers are counted, and a channel whose count went to
/// or from zero since the last pass is remembered, so that a pass of the
/// subscription manager costs the channels that changed, not all of them
/// (10,000 sockets reconnecting at once do not mean 10,000 passes over
/// every channel). Pure; the hub keeps it under its lock.
struct ChannelDemand: Sendable {
    private(set) var counts: [String: Int] = [:]
    private var changed: Set<String> = []

    init(fixed: [String] = []) {
        for channel in fixed { self.retain(channel) }
    }

    mutating func retain(_ channel: String) {
        self.counts[channel, default: 0] += 1
        if self.counts[channel] == 1 { self.changed.insert(channel) }
    }

    mutating func release(_ channel: String) {
        guard let count = self.counts[channel] else { return }
        if count <= 1 {
            self.counts[channel] = nil
            self.changed.insert(channel)
        } else {
            self.counts[channel] = count - 1
        }
    }

    /// What to subscribe and unsubscribe for Redis to match, given what it
    /// has (`applied`): only the channels changed since the last call.
    mutating func takeChanges(applied: Set<String>) -> (subscribe: [String], unsubscribe: [String]) {
        var subscribe: [String] = [], unsubscribe: [String] = []
        for channel in self.changed {
            let wanted = self.counts[channel] != nil
            if wanted, !applied.contains(channel) { subscribe.append(channel) }
            if !wanted, applied.contains(channel) { unsubscribe.append(channel) }
        }
        self.changed.removeAll(keepingCapacity: true)
        return (subscribe.sorted(), unsubscribe.sorted())
    }

    /// Changes Redis refused (the subscriber was away): tried again by the next pass.
    mutating func retry(_ channels: [String]) {
        self.changed.formUnion(channels)
    }
}

/// The WebSockets of this instance, indexed by user, chat and session, and
/// the Redis channels they need: a chat channel while at least one local
/// connection belongs to a member, a user channel while the user is
/// connected here, and the revocation channel always. One subscriber
/// serves them all (a connection, or one per master of a cluster); `ChannelDemand` counts who
/// follows each channel, so that subscribing costs only what changed.
final class ConnectionHub: Sendable {
    private struct State {
        var connections: [UUID: Connection] = [:]
        var byUser: [UUID: Set<UUID>] = [:]
        var byChat: [UUID: Set<UUID>] = [:]
        var bySession: [UUID: Set<UUID>] = [:]
        var channels = ChannelDemand(fixed: ConnectionHub.fixedChannels)

        mutating func follow(_ chat: UUID, by id: UUID) {
            if self.byChat[chat, default: []].insert(id).inserted { self.channels.retain(ChatEventPublisher.channel(chat)) }
        }

        mutating func unfollow(_ chat: UUID, by id: UUID) {
            if ConnectionHub.remove(id, from: &self.byChat, key: chat) { self.channels.release(ChatEventPublisher.channel(chat)) }
        }
    }

    private let state = Mutex(State())
    let subscriptions: SubscriptionManager

    init(subscriber: RedisSubscriber, logger: Logger) {
        self.subscriptions = SubscriptionManager(subscriber: subscriber, logger: logger)
        self.subscriptions.setSource(
            changes: { [weak self] applied in self?.state.withLock { $0.channels.takeChanges(applied: applied) } ?? ([], []) },
            retry: { [weak self] channels in self?.state.withLock { $0.channels.retry(channels) } }
        )
    }

    /// Channels every instance listens to.
    static let fixedChannels = [SessionRevocations.channel]

    /// Adds a connection; returns once Redis confirmed its channels.
    func register(_ connection: Connection) async {
        self.state.withLock { state in
            state.connections[connection.id] = connection
            if state.byUser[connection.userID, default: []].insert(connection.id).inserted {
                state.channels.retain(ChatEventPublisher.userChannel(connection.userID))
            }
            state.bySession[connection.sessionID, default: []].insert(connection.id)
            for chat in connection.chats { state.follow(chat, by: connection.id) }
        }
        await self.subscriptions.sync()
    }

    func unregister(_ connection: Connection) async {
        self.state.withLock { state in
            guard state.connections.removeValue(forKey: connection.id) != nil else { return }
            if Self.remove(connection.id, from: &state.byUser, key: connection.userID) {
                state.channels.release(ChatEventPublisher.userChannel(connection.userID))
            }
            Self.remove(connection.id, from: &state.bySession, key: connection.sessionID)
            for chat in connection.chats { state.unfollow(chat, by: connection.id) }
        }
        await self.subscriptions.sync()
    }

    /// Removes `id` from the set under `key` (dropping an empty set); true if it was there.
    @discardableResult
    private static func remove(_ id: UUID, from index: inout [UUID: Set<UUID>], key: UUID) -> Bool {
        guard index[key]?.remove(id) != nil else { return false }
        if index[key]?.isEmpty == true { index[key] = nil }
        return true
    }

    /// A user joined a chat: their local connections follow it from now on.
    func addChat(_ chatID: UUID, forUser userID: UUID) async -> [Connection] {
        let connections = self.state.withLock { state -> [Connection] in
            let connections = (state.byUser[userID] ?? []).compactMap { state.connections[$0] }
            for connection in connections {
                connection.addChat(chatID)
                state.follow(chatID, by: connection.id)
            }
            return connections
        }
        if !connections.isEmpty { await self.subscriptions.sync() }
        return connections
    }

    /// A user left a chat: their local connections stop following it.
    func removeChat(_ chatID: UUID, forUser userID: UUID) async -> [Connection] {
        let connections = self.state.withLock { state -> [Connection] in
            let connections = (state.byUser[userID] ?? []).compactMap { state.connections[$0] }
            for connection in connections {
                connection.removeChat(chatID)
                state.unfollow(chatID, by: connection.id)
            }
            return connections
        }
        if !connections.isEmpty { await self.subscriptions.sync() }
        return connections
    }

    func connections(inChat chatID: UUID) -> [Connection] {
        self.state.withLock { state in (state.byChat[chatID] ?? []).compactMap { state.connections[$0] } }
    }

    /// Whether a connection here follows the chat.
    func follows(_ chatID: UUID) -> Bool {
        self.state.withLock { $0.byChat[chatID] != nil }
    }

    func connections(ofUser userID: UUID) -> [Connection] {
        self.state.withLock { state in (state.byUser[userID] ?? []).compactMap { state.connections[$0] } }
    }

    func connections(ofSession sessionID: UUID) -> [Connection] {
        self.state.withLock { state in (state.bySession[sessionID] ?? []).compactMap { state.connections[$0] } }
    }

    var all: [Connection] { self.state.withLock { Array($0.connections.values) } }
}

/// Applies subscription changes one pass at a time: each pass takes the
/// channels that changed since the last one (`ChannelDemand`) and
/// subscribes/unsubscribes the difference with Redis, so a SUBSCRIBE and an
/// UNSUBSCRIBE of one channel never overtake each other and no pass works
/// from a stale picture. Everyone who asked for a pass before it took the
/// changes is answered by it: a thousand sockets registering together share
/// a few passes, not one each.
final class SubscriptionManager: Sendable {
    typealias Changes = (subscribe: [String], unsubscribe: [String])

    private let subscriber: RedisSubscriber
    private let logger: Logger
    private struct Waiting {
        var continuations: [CheckedContinuation<Void, Never>] = []
        /// The loop sleeps on this until someone asks.
        var wake: CheckedContinuation<Void, Never>?
        var finished = false
    }

    private let waiting = Mutex(Waiting())
    /// Boxed: a closure kept directly in a Mutex is re-wrapped in conversion
    /// thunks on every `withLock` (inout of a generic value), and the chain
    /// grows with each call — each pass got slower than the one before.
    private final class Source: Sendable {
        let changes: @Sendable (Set<String>) -> Changes
        let retry: @Sendable ([String]) -> Void
        init(changes: @escaping @Sendable (Set<String>) -> Changes, retry: @escaping @Sendable ([String]) -> Void) {
            self.changes = changes
            self.retry = retry
        }
    }

    private let source = Mutex<Source?>(nil)
    /// Passes run so far (`parley_subscription_passes_total`).
    let passes = Atomic<Int>(0)
    private let passCounter = Counter(label: "parley_subscription_passes_total")

    init(subscriber: RedisSubscriber, logger: Logger) {
        self.subscriber = subscriber
        self.logger = logger
    }

    func setSource(changes: @escaping @Sendable (Set<String>) -> Changes, retry: @escaping @Sendable ([String]) -> Void) {
        self.source.withLock { $0 = Source(changes: changes, retry: retry) }
    }

    /// Returns once a pass that started after this call has been applied.
    func sync() async {
        await withCheckedContinuation { done in
            let wake = self.waiting.withLock { waiting -> CheckedContinuation<Void, Never>?? in
                if waiting.finished { return .none }
                waiting.continuations.append(done)
                defer { waiting.wake = nil }
                return .some(waiting.wake)
            }
            switch wake {
            case .none: done.resume()
            case .some(let loop): loop?.resume()
            }
        }
    }

    /// Runs passes until `finish()` or cancellation (a service group
    /// cancels its services when one of them fails: this must end then too).
    func run() async {
        await withTaskCancellationHandler {
            await self.applyPasses()
        } onCancel: {
            self.finish()
        }
    }

    private func applyPasses() async {
        var applied = Set<String>()
        while let answered = await self.nextRequests() {
            self.passes.add(1, ordering: .relaxed)
            self.passCounter.increment()
            let changes: Changes = self.source.withLock { $0 }?.changes(applied) ?? ([], [])
            do {
                if !changes.subscribe.isEmpty {
                    try await self.subscribe(changes.subscribe)
                    applied.formUnion(changes.subscribe)
                }
                if !changes.unsubscribe.isEmpty {
                    try await self.unsubscribe(changes.unsubscribe)
                    applied.subtract(changes.unsubscribe)
                }
            } catch {
                // the subscriber forgot a channel it was told to drop even if Redis
                // did not answer: wanted again later, it must be subscribed again
                applied.subtract(changes.unsubscribe)
                self.source.withLock { $0 }?.retry(changes.subscribe + changes.unsubscribe)
                self.logger.warning("subscription change failed; it is retried with the next one", metadata: ["error": "\(error)"])
            }
            for done in answered { done.resume() }
        }
        // stopped: nobody may wait forever
        self.finish()
    }

    /// In a Redis Cluster, chat and user channels are shard channels
    /// (SSUBSCRIBE: heard from the master of their slot only) and the fixed
    /// ones (session revocations) classic channels that every node relays.
    /// With a single Redis every channel is classic, as gateways of earlier
    /// versions publish them (a rolling upgrade keeps working).
    private func subscribe(_ channels: [String]) async throws {
        let (broadcast, sharded) = self.split(channels)
        if !broadcast.isEmpty { try await self.subscriber.subscribe(broadcast) }
        if !sharded.isEmpty { try await self.subscriber.ssubscribe(sharded) }
    }

    private func unsubscribe(_ channels: [String]) async throws {
        let (broadcast, sharded) = self.split(channels)
        if !broadcast.isEmpty { try await self.subscriber.unsubscribe(broadcast) }
        if !sharded.isEmpty { try await self.subscriber.sunsubscribe(sharded) }
    }

    private static let broadcast = Set(ConnectionHub.fixedChannels)

    /// Must match what `ChatEventPublisher` publishes on (SPUBLISH in a cluster).
    private func split(_ channels: [String]) -> (broadcast: [String], sharded: [String]) {
        guard self.subscriber.isCluster else { return (channels, []) }
        return (channels.filter { Self.broadcast.contains($0) }, channels.filter { !Self.broadcast.contains($0) })
    }

    /// Waits until someone asks for a pass, then takes everyone waiting: the
    /// pass that follows answers them all. Nil once finished.
    private func nextRequests() async -> [CheckedContinuation<Void, Never>]? {
        while true {
            let taken = self.waiting.withLock { waiting -> [CheckedContinuation<Void, Never>]? in
                if waiting.finished { return nil }
                defer { waiting.continuations.removeAll() }
                return waiting.continuations
            }
            guard let taken else { return nil }
            if !taken.isEmpty { return taken }
            await withCheckedContinuation { wake in
                let sleeps = self.waiting.withLock { waiting -> Bool in
                    guard !waiting.finished, waiting.continuations.isEmpty else { return false }
                    waiting.wake = wake
                    return true
                }
                if !sleeps { wake.resume() }
            }
        }
    }

    func finish() {
        let (waiters, loop) = self.waiting.withLock { waiting in
            waiting.finished = true
            defer {
                waiting.continuations.removeAll()
                waiting.wake = nil
            }
            return (waiting.continuations, waiting.wake)
        }
        for done in waiters { done.resume() }
        loop?.resume()
    }
}
