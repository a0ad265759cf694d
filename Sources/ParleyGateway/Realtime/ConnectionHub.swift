import Foundation
import HiredisNIO
import Logging
import Synchronization
import ParleyChat

/// The WebSockets of this instance, indexed by user, chat and session, and
/// the Redis channels they need: a chat channel while at least one local
/// connection belongs to a member, a user channel while the user is
/// connected here, and the revocation channel always. One subscriber
/// connection per process serves them all.
final class ConnectionHub: Sendable {
    private struct State {
        var connections: [UUID: Connection] = [:]
        var byUser: [UUID: Set<UUID>] = [:]
        var byChat: [UUID: Set<UUID>] = [:]
        var bySession: [UUID: Set<UUID>] = [:]
    }

    private let state = Mutex(State())
    let subscriptions: SubscriptionManager

    init(subscriber: RedisSubscriber, logger: Logger) {
        self.subscriptions = SubscriptionManager(subscriber: subscriber, logger: logger)
        self.subscriptions.setWanted { [weak self] in self?.wantedChannels ?? Set(Self.fixedChannels) }
    }

    /// Channels every instance listens to.
    static let fixedChannels = [SessionRevocations.channel]

    var wantedChannels: Set<String> {
        self.state.withLock { state in
            var channels = Set(Self.fixedChannels)
            for chat in state.byChat.keys { channels.insert(ChatEventPublisher.channel(chat)) }
            for user in state.byUser.keys { channels.insert(ChatEventPublisher.userChannel(user)) }
            return channels
        }
    }

    /// Adds a connection; returns once Redis confirmed its channels.
    func register(_ connection: Connection) async {
        self.state.withLock { state in
            state.connections[connection.id] = connection
            state.byUser[connection.userID, default: []].insert(connection.id)
            state.bySession[connection.sessionID, default: []].insert(connection.id)
            for chat in connection.chats { state.byChat[chat, default: []].insert(connection.id) }
        }
        await self.subscriptions.sync()
    }

    func unregister(_ connection: Connection) async {
        self.state.withLock { state in
            state.connections[connection.id] = nil
            Self.remove(connection.id, from: &state.byUser, key: connection.userID)
            Self.remove(connection.id, from: &state.bySession, key: connection.sessionID)
            for chat in connection.chats { Self.remove(connection.id, from: &state.byChat, key: chat) }
        }
        await self.subscriptions.sync()
    }

    private static func remove(_ id: UUID, from index: inout [UUID: Set<UUID>], key: UUID) {
        index[key]?.remove(id)
        if index[key]?.isEmpty == true { index[key] = nil }
    }

    /// A user joined a chat: their local connections follow it from now on.
    func addChat(_ chatID: UUID, forUser userID: UUID) async -> [Connection] {
        let connections = self.state.withLock { state -> [Connection] in
            let connections = (state.byUser[userID] ?? []).compactMap { state.connections[$0] }
            for connection in connections {
                connection.addChat(chatID)
                state.byChat[chatID, default: []].insert(connection.id)
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
                Self.remove(connection.id, from: &state.byChat, key: chatID)
            }
            return connections
        }
        if !connections.isEmpty { await self.subscriptions.sync() }
        return connections
    }

    func connections(inChat chatID: UUID) -> [Connection] {
        self.state.withLock { state in (state.byChat[chatID] ?? []).compactMap { state.connections[$0] } }
    }

    func connections(ofSession sessionID: UUID) -> [Connection] {
        self.state.withLock { state in (state.bySession[sessionID] ?? []).compactMap { state.connections[$0] } }
    }

    var all: [Connection] { self.state.withLock { Array($0.connections.values) } }
}

/// Applies subscription changes one pass at a time: each pass reads the
/// hub's current wanted channels and subscribes/unsubscribes the difference,
/// so a SUBSCRIBE and an UNSUBSCRIBE of one channel never overtake each other
/// and no pass works from a stale picture.
final class SubscriptionManager: Sendable {
    private let subscriber: RedisSubscriber
    private let logger: Logger
    private let requests: AsyncStream<CheckedContinuation<Void, Never>>
    private let continuation: AsyncStream<CheckedContinuation<Void, Never>>.Continuation
    /// Boxed: a closure kept directly in a Mutex is re-wrapped in conversion
    /// thunks on every `withLock` (inout of a generic value), and the chain
    /// grows with each call — each pass got slower than the one before.
    private final class Provider: Sendable {
        let wanted: @Sendable () -> Set<String>
        init(_ wanted: @escaping @Sendable () -> Set<String>) { self.wanted = wanted }
    }

    private let wanted = Mutex<Provider?>(nil)

    init(subscriber: RedisSubscriber, logger: Logger) {
        self.subscriber = subscriber
        self.logger = logger
        (self.requests, self.continuation) = AsyncStream.makeStream()
    }

    func setWanted(_ provider: @escaping @Sendable () -> Set<String>) {
        self.wanted.withLock { $0 = Provider(provider) }
    }

    /// Returns once a pass that started after this call has been applied.
    func sync() async {
        await withCheckedContinuation { done in
            if case .terminated = self.continuation.yield(done) { done.resume() }
        }
    }

    func run() async {
        var applied = Set<String>()
        var iterator = self.requests.makeAsyncIterator()
        while let first = await iterator.next() {
            let wanted = self.wanted.withLock { $0 }?.wanted() ?? []
            let toAdd = wanted.subtracting(applied)
            let toRemove = applied.subtracting(wanted)
            do {
                if !toAdd.isEmpty { try await self.subscriber.subscribe(Array(toAdd)) }
                if !toRemove.isEmpty { try await self.subscriber.unsubscribe(Array(toRemove)) }
                applied = wanted
            } catch {
                self.logger.warning("subscription change failed; it is retried with the next one", metadata: ["error": "\(error)"])
            }
            first.resume()
        }
        // stopped (finished or cancelled): nobody may wait forever
        self.continuation.finish()
        for await waiting in self.requests { waiting.resume() }
    }

    func finish() {
        self.continuation.finish()
    }
}
