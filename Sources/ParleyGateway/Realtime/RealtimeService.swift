import Foundation
import HiredisNIO
import Logging
import Metrics
import NIOCore
import ParleyCore
public import ServiceLifecycle
import Synchronization
import ParleyChat

/// Limits of the realtime gateway (PROTOCOL.md "Limits").
public struct RealtimeLimits: Sendable {
    public var frameBytes = 64 * 1024
    public var queuedFrames = 1000
    /// Bytes of frames queued per connection (then 4008, like `queuedFrames`).
    public var queuedBytes = 4 << 20
    public var connectionsPerUser = 20
    public var helloTimeout: Duration = .seconds(10)
    public var heartbeat: Duration = .seconds(25)
    /// Client frames per second on one socket (then 1008).
    public var framesPerSecond = 50
    /// Typing frames per second on one socket (more get `rate_limited`).
    public var typingPerSecond = 2
    /// Bad frames tolerated per minute before closing with 1008.
    public var badFramesPerMinute = 20
    /// Missed messages a resume replays before answering `resync`.
    public var resumeLimit = 500
    /// How long a message that arrives past a gap waits for the gap to close
    /// (messages of one chat committed by different gateways can reach Redis
    /// out of order) before the gap is read from PostgreSQL, once for the
    /// chat's sockets here; zero hands every message over at once.
    public var reorderWindow: Duration = .milliseconds(100)

    public init() {}
}

/// The realtime side of one gateway process: the Redis subscriber (one per
/// process), the subscription manager, the dispatcher that routes pub/sub
/// events to local connections, and the presence heartbeat and sweeper.
public final class RealtimeService: Service {
    let hub: ConnectionHub
    /// Every WebSocket of this process, from its upgrade until it is released.
    let sockets = OpenSockets()
    /// Their heartbeats: one timer per event loop.
    let heartbeats: HeartbeatWheels
    let subscriber: RedisSubscriber
    let presence: Presence
    let chats: ChatService
    let revocations: SessionRevocations
    let limits: RealtimeLimits
    let logger: Logger
    /// Each chat's message events, back in seq order (`MessageOrder`).
    private let order: Mutex<MessageOrder<(seq: Int64, payload: ByteBuffer)>>
    private let reordered = Counter(label: "parley_messages_reordered_total")
    /// Gaps that stayed open for the window: read once for the chat's sockets, or left to each socket.
    private let gapsFilled = Counter(label: "parley_message_gaps_filled_total")
    private let gapsLeftOpen = Counter(label: "parley_message_gaps_left_open_total")
    /// Reads of a changed chat for all of its sockets here (`ChatViews`): at
    /// most one per `chat_updated` event, fewer in a burst.
    private let chatUpdatesRead = Counter(label: "parley_chat_updates_read_total")
    /// Per chat, its latest `ChatViews` until that read ended.
    private let chatViews = Mutex<[UUID: ChatViews]>([:])
    /// Events skipped because their envelope could not be read (a newer publisher).
    private let undecodable = Counter(label: "parley_events_undecodable_total")

    init(
        redisConfiguration: RedisConfiguration, redis: RedisClient, chats: ChatService, revocations: SessionRevocations, limits: RealtimeLimits,
        logger: Logger
    ) {
        self.revocations = revocations
        self.subscriber = RedisSubscriber(configuration: redisConfiguration, backoff: Backoff(base: .milliseconds(50), cap: .seconds(2)), pingInterval: .seconds(2), logger: logger)
        self.hub = ConnectionHub(subscriber: self.subscriber, logger: logger)
        self.presence = Presence(redis: redis, store: chats.store, publisher: chats.publisher)
        self.chats = chats
        self.limits = limits
        self.heartbeats = HeartbeatWheels(period: limits.heartbeat)
        self.logger = logger
        self.order = Mutex(MessageOrder(window: limits.reorderWindow))
        // events Redis could not take still reach this instance's sockets
        chats.publisher.local.set { [weak self] deliveries in
            for (channel, payload) in deliveries { await self?.route(channel: channel, payload: payload) }
        }
        // a revoked session's sockets close at once, however the revocation became known
        revocations.onRevoked { [hub] sessionIDs in
            for sessionID in sessionIDs {
                for connection in hub.connections(ofSession: sessionID) { connection.close(4001, "session ended") }
            }
        }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await self.subscriber.run() }
                group.addTask { await self.hub.subscriptions.run() }
                group.addTask { await self.dispatch() }
                group.addTask { await self.heartbeats() }
                group.addTask { await self.sweeps() }
                group.addTask { await self.expiries() }
                group.addTask { await self.releaseHeldMessages() }
                // the instance's own channels, before any connection arrives
                group.addTask { await self.hub.subscriptions.sync() }
                await group.next()
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            // Every WebSocket is told to reconnect elsewhere; requests in flight finish.
            self.closeSocketsForShutdown()
            self.hub.subscriptions.finish()
        }
    }

    // MARK: dispatch

    func dispatch() async {
        await withDiscardingTaskGroup { group in
            for await event in self.subscriber.events {
                switch event {
                case .message(let channel, let payload), .patternMessage(_, let channel, let payload):
                    await self.route(channel: channel, payload: payload)
                case .gap(let from, let to):
                    self.logger.warning("redis subscription gap: resyncing local connections", metadata: ["gap.from": "\(from)", "gap.to": "\(to)"])
                    let missed = await self.reconcileAfterGap()
                    // the reads run beside the dispatch: the chats they fill hold what comes meanwhile
                    group.addTask { await self.readMissed(missed) }
                }
            }
        }
    }

    /// What a Redis subscription gap left to read: each chat's gap, and
    /// where each local user's chats were once the subscriptions came back.
    struct MissedDuringGap: Sendable {
        var gaps: [MessageOrder<(seq: Int64, payload: ByteBuffer)>.Gap]
        var positions: [UUID: [UUID: Int64]]
        var connections: [Connection]
    }

    /// After a Redis subscription gap, membership changes and logouts
    /// announced meanwhile were missed, and so were the messages published.
    /// Each local user is reconciled (their chats read once), and each chat
    /// behind where PostgreSQL is gets its gap (`MessageOrder.resumed`).
    func reconcileAfterGap() async -> MissedDuringGap {
        let connections = self.hub.all
        var positions: [UUID: [UUID: Int64]] = [:]
        await withTaskGroup(of: (UUID, [UUID: Int64]?).self) { group in
            // concurrently, a window at a time: their reads of the users' chats batch
            for (index, user) in Set(connections.map(\.userID)).enumerated() {
                if index >= 256, let (done, read) = await group.next() { positions[done] = read }
                group.addTask { (user, await self.reconcile(user: user)) }
            }
            for await (done, read) in group { positions[done] = read }
        }
        let latest = positions.values.reduce(into: [UUID: Int64]()) { latest, chats in
            latest.merge(chats) { max($0, $1) }
        }
        let gaps = self.order.withLock { order in
            let (released, gaps) = order.resumed(latest: latest, now: .now)
            for (chat, items) in released { self.deliver(items, chat: chat) }
            return gaps
        }
        return MissedDuringGap(gaps: gaps, positions: positions, connections: connections)
    }

    /// What each chat missed during a Redis gap, read once for all of its
    /// sockets here; then every socket of that moment catches up to where its
    /// user's chats were, which reads nothing unless a read failed, the chat
    /// was not remembered, or the socket was behind already.
    func readMissed(_ missed: MissedDuringGap) async {
        await withTaskGroup(of: Void.self) { group in
            for (index, gap) in missed.gaps.enumerated() {
                if index >= 4 { await group.next() }  // beside the requests using the pool
                group.addTask { await self.fill(gap) }
            }
        }
        for connection in missed.connections { connection.enqueue(.catchUp(upTo: missed.positions[connection.userID])) }
    }

    /// One payload of a subscribed channel: a session revocation, or an
    /// `EventEnvelope` routed by its header (the client frame inside is
    /// passed to sockets as it is, never parsed here).
    func route(channel: String, payload: ByteBuffer) async {
        if channel == SessionRevocations.channel {
            if let sessionID = UUID(uuidString: String(buffer: payload)) { self.revocations.learn([sessionID]) }
            return
        }
        let envelope: EventEnvelope
        do {
            envelope = try EventEnvelope.decode(payload)
        } catch {
            if error.code == .notAnEnvelope, let legacy = EventEnvelope.legacy(payload, channelChatID: channel.chatIDOfChannel) {
                // a gateway of the previous version, during a rolling upgrade
                envelope = legacy
            } else {
                // a newer publisher during a rolling upgrade, or not ours
                self.undecodable.increment()
                self.logger.debug("skipped an event this gateway cannot read", metadata: ["channel": "\(channel)", "error": "\(error)"])
                return
            }
        }
        switch envelope.kind {
        case .message:
            guard let chat = envelope.chatID, let seq = envelope.seq else { return }
            let frame = WireFrame.text(envelope.frame)
            self.order.withLock { order in
                let items = order.receive(chat: chat, seq: seq, item: (seq, frame), now: .now)
                if items.count > 1 { self.reordered.increment(by: items.count - 1) }  // counted once, when released
                self.deliver(items, chat: chat)
            }
        case .messageUpdated, .reaction:
            // after the message itself, if it is held for a missing seq
            guard let chat = envelope.chatID else { return }
            let frame = WireFrame.text(envelope.frame)
            self.afterHeldMessages(of: chat) { connections in
                for connection in connections { connection.enqueue(.chatEvent(chatID: chat, payload: frame)) }
            }
        case .read:
            // Read positions are frequent in busy chats and say nothing about
            // message order: they pass held messages (flushing them would make
            // every socket read the gap from PostgreSQL).
            guard let chat = envelope.chatID else { return }
            let frame = WireFrame.text(envelope.frame)
            for connection in self.hub.connections(inChat: chat) { connection.enqueue(.chatEvent(chatID: chat, payload: frame)) }
        case .typing:
            guard let chat = envelope.chatID, let user = envelope.userID else { return }
            let frame = WireFrame.text(envelope.frame)
            for connection in self.hub.connections(inChat: chat) { connection.enqueue(.typing(chatID: chat, userID: user, payload: frame)) }
        case .presence:
            guard let user = envelope.userID, let online = envelope.flag, let chat = envelope.chatID else { return }
            let frame = WireFrame.text(envelope.frame)
            for connection in self.hub.connections(inChat: chat) { connection.enqueue(.presence(userID: user, online: online, payload: frame)) }
        case .chatUpdated:
            // with a user: a change for that member alone (their settings)
            guard let chat = envelope.chatID else { return }
            let user = envelope.userID
            self.afterHeldMessages(of: chat) { connections in
                let told = connections.filter { user == nil || $0.userID == user }
                guard !told.isEmpty else { return }
                // one read of the chat for all of them, each socket taking its own view in its order
                let views = self.views(of: chat, for: told.map(\.userID))
                for connection in told { connection.enqueue(.chatChanged(chat, views)) }
            }
        case .memberAdded:
            guard let chat = envelope.chatID, let user = envelope.userID else { return }
            let since = envelope.seq ?? 0
            self.flushHeld(chat)
            for connection in await self.hub.addChat(chat, forUser: user) { connection.enqueue(.chatAdded(chat, since: since)) }
        case .memberRemoved:
            guard let chat = envelope.chatID, let user = envelope.userID else { return }
            self.flushHeld(chat)
            for connection in await self.hub.removeChat(chat, forUser: user) { connection.enqueue(.chatRemoved(chat)) }
        case .userRegistered:
            // only ever in the notifier's stream, never on a channel
            return
        }
    }

    /// The read a `chat_updated` event's sockets take their frames from: the
    /// chat's read that has not started yet, or a new one that starts once
    /// the chat's running read ended.
    private func views(of chat: UUID, for viewers: [UUID]) -> ChatViews {
        self.chatViews.withLock { latest in
            if let waiting = latest[chat], waiting.join(viewers) { return waiting }
            let views = ChatViews.start(
                chat: chat, viewers: viewers, after: latest[chat], store: self.chats.store, reads: self.chatUpdatesRead,
                ended: { [weak self] ended in
                    self?.chatViews.withLock { latest in if latest[chat] === ended { latest[chat] = nil } }
                }
            )
            latest[chat] = views
            return views
        }
    }

    /// Hands messages over to the chat's sockets here, in the order given.
    /// Called under the order's lock, so that what one caller released never
    /// overtakes what another released before it.
    private func deliver(_ items: [(seq: Int64, payload: ByteBuffer)], chat: UUID) {
        guard !items.isEmpty else { return }
        for connection in self.hub.connections(inChat: chat) {
            for item in items { connection.enqueue(.message(chatID: chat, seq: item.seq, payload: item.payload)) }
        }
    }

    /// Hands over what the chat holds, then gives `event` to each of the
    /// chat's sockets: an edit, a chat change or a membership change goes
    /// after the messages received before it, as it would without holding.
    private func flushHeld(_ chat: UUID) {
        self.order.withLock { self.deliver($0.flush(chat: chat), chat: chat) }
    }

    private func afterHeldMessages(of chat: UUID, _ event: ([Connection]) -> Void) {
        self.order.withLock { order in
            self.deliver(order.flush(chat: chat), chat: chat)
            event(self.hub.connections(inChat: chat))
        }
    }

    /// A socket's chats, each with its last seq read once its subscriptions
    /// took effect: the order remembers those it has not seen yet, so that a
    /// Redis gap finds even a chat quiet since this instance started.
    func remember(_ latest: [UUID: Int64]) {
        self.order.withLock { $0.follow(latest, now: .now) }
    }

    /// Reads the gaps that did not close within the window from PostgreSQL,
    /// once per chat for all of its sockets here, and hands the chat over in
    /// order; forgets idle chats no socket here follows.
    func releaseHeldMessages() async {
        guard self.limits.reorderWindow > .zero else { return }
        let idle = min(self.limits.reorderWindow / 4, .seconds(1))
        // each read runs beside the loop: one slow read delays only its own chat
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let deadline = self.order.withLock { $0.nextDeadline }
                try? await Task.sleep(until: deadline ?? .now + idle)
                let gaps = self.order.withLock { $0.expire(now: .now, followed: self.hub.follows) }
                for gap in gaps { group.addTask { await self.fill(gap) } }
            }
        }
    }

    /// One open gap: the missing messages read once, then the chat handed
    /// over. A gap too long to replay, or a failed read, is left to the
    /// sockets (each reads it, or answers `resync`), as before.
    func fill(_ gap: MessageOrder<(seq: Int64, payload: ByteBuffer)>.Gap) async {
        var read: [(seq: Int64, item: (seq: Int64, payload: ByteBuffer))] = []
        if gap.through - gap.after <= Int64(self.limits.resumeLimit) {
            do {
                for message in try await self.chats.store.messages(in: [SeqRange(chatID: gap.chat, after: gap.after, through: gap.through)]) {
                    read.append((message.seq, (message.seq, WireFrame.text(ServerFrame.message(message)))))
                }
            } catch {
                self.logger.warning("could not read a gap of a chat; its sockets read it themselves", metadata: ["chat.id": "\(gap.chat.lowercased)", "error": "\(error)"])
            }
        }
        (read.isEmpty ? self.gapsLeftOpen : self.gapsFilled).increment()
        self.order.withLock { order in self.deliver(order.filled(gap, read: read, now: .now), chat: gap.chat) }
    }

    /// Brings a user's local connections in line with PostgreSQL: chats joined
    /// or left while events could have been missed, and revoked sessions.
    /// Returns the positions it read (each chat's last seq), nil if the read failed.
    @discardableResult
    func reconcile(user: UUID) async -> [UUID: Int64]? {
        guard let positions = try? await self.chats.store.chatPositions(of: user) else { return nil }
        let connections = self.hub.connections(ofUser: user)
        let followed = connections.reduce(into: Set<UUID>()) { $0.formUnion($1.chats) }
        for chat in followed.subtracting(positions.keys) {
            for connection in await self.hub.removeChat(chat, forUser: user) { connection.enqueue(.chatRemoved(chat)) }
        }
        for (chat, lastSeq) in positions where !connections.allSatisfy({ $0.follows(chat) }) {
            for connection in await self.hub.addChat(chat, forUser: user) { connection.enqueue(.chatAdded(chat, since: lastSeq)) }
        }
        for connection in connections where (try? await self.revocations.isRevoked(connection.sessionID)) == true {
            connection.close(4001, "session ended")
        }
        return positions
    }

    // MARK: presence upkeep

    func heartbeats() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: self.presence.heartbeatInterval)
            do {
                for user in try await self.presence.heartbeat(self.hub.all) {
                    await self.presence.announce(user, online: true, logger: self.logger)
                }
            } catch {
                self.logger.warning("presence heartbeat failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Closes connections whose access token has expired (4001), once a
    /// second: one loop for all of them instead of a sleeping task each.
    func expiries() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(1))
            let now = Date()
            for connection in self.hub.all where connection.expiresAt <= now { connection.close(4001, "access token expired") }
        }
    }

    func sweeps() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: self.presence.sweepInterval)
            guard let offline = try? await self.presence.sweep() else { continue }
            for user in offline { await self.presence.announce(user, online: false, logger: self.logger) }
        }
    }
}

extension String {
    /// The chat id of a `chat:{<id>}` channel (for the JSON events of the
    /// previous version, whose presence events did not name the chat).
    var chatIDOfChannel: UUID? {
        guard self.hasPrefix("chat:{"), self.hasSuffix("}") else { return nil }
        return UUID(uuidString: String(self.dropFirst(6).dropLast()))
    }
}

/// Put last in the process's ServiceGroup, so that it hears the shutdown
/// first: it closes every WebSocket with 1012 (clients reconnect elsewhere
/// and resume) before the HTTP server starts waiting for its connections.
public struct WebSocketDrain: Service {
    let realtime: RealtimeService

    public func run() async throws {
        try? await gracefulShutdown()
        self.realtime.closeSocketsForShutdown()
        let deadline = ContinuousClock.now + .seconds(10)
        while self.realtime.sockets.open > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// The WebSockets of a process, counted from the upgrade until each has
/// been released (unsubscribed, its presence slot freed), so that a
/// shutdown waits for them; and whether the process is draining (new
/// sockets are refused with 1012).
final class OpenSockets: Sendable {
    private let count = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)

    func opened() { self.count.add(1, ordering: .relaxed) }
    func released() { self.count.subtract(1, ordering: .relaxed) }
    var open: Int { self.count.load(ordering: .relaxed) }

    func drain() { self.draining.store(true, ordering: .relaxed) }
    var isDraining: Bool { self.draining.load(ordering: .relaxed) }
}

extension RealtimeService {
    public var drain: WebSocketDrain { WebSocketDrain(realtime: self) }

    /// Closes every registered socket with 1012 and refuses new ones (those
    /// still saying hello are refused with 1012 when they do, or time out).
    func closeSocketsForShutdown() {
        self.sockets.drain()
        for connection in self.hub.all { connection.close(1012, "server restarting; reconnect with resume") }
    }
}
