import DequeModule
import Foundation
import NIOCore
import ParleyCore
import Synchronization

/// What a connection's writer processes, in order. An event's frame is one
/// buffer, encoded for the wire once (`WireFrame`) and shared by every
/// socket it goes to.
enum Outgoing: Sendable {
    /// A frame for this connection only (ready, ack, error, pong).
    case frame(String)
    /// A message event of a chat; delivered once, in seq order (gaps are read from PostgreSQL).
    case message(chatID: UUID, seq: Int64, payload: ByteBuffer)
    /// Any other chat event (message_updated, read), forwarded as is.
    case chatEvent(chatID: UUID, payload: ByteBuffer)
    /// Typing of another user; dropped first under pressure, never echoed.
    case typing(chatID: UUID, userID: UUID, payload: ByteBuffer)
    case presence(userID: UUID, online: Bool, payload: ByteBuffer)
    /// Send everything after the delivered seq of every chat (resume, Redis
    /// gap), up to each chat's seq in `upTo` (nil: where the registration
    /// found them, or, without that, where a read finds them now).
    case catchUp(upTo: [UUID: Int64]?)
    /// The user joined a chat whose last seq was `since` at that moment.
    case chatAdded(UUID, since: Int64)
    /// The chat changed: its new state, read once for every socket told (`ChatViews`).
    case chatChanged(UUID, ChatViews)
    case chatRemoved(UUID)
    /// The close frame of a close decided while answers were still queued:
    /// written after them, so a client sees every answer it was owed.
    case close(code: UInt16, reason: String)

    /// What it holds in the queue, in bytes (the frame's length).
    var cost: Int {
        switch self {
        case .frame(let text):
            return text.utf8.count
        case .message(_, _, let frame), .chatEvent(_, let frame), .typing(_, _, let frame), .presence(_, _, let frame):
            return frame.readableBytes
        case .catchUp, .chatAdded, .chatChanged, .chatRemoved:
            return 64
        case .close:
            return 0
        }
    }
}

/// One WebSocket on this instance: who it is, which chats it follows, and a
/// bounded outbound queue. Whoever queues an item wakes the socket's handler
/// (`wake`) unless it is already due to run; the handler drains the queue on
/// its event loop and flushes once per drain, so a slow reader only ever
/// slows itself down and a burst of events costs one write to the kernel.
final class Connection: Sendable {
    let id: UUID
    let userID: UUID
    let sessionID: UUID
    /// When the access token that opened it expires: the socket is closed
    /// with 4001 then (RealtimeService's expiry sweep; the client refreshes and resumes).
    let expiresAt: Date
    private struct Outbox {
        var items = Deque<Outgoing>()
        var bytes = 0
        /// The handler was woken and has not yet found the queue empty.
        var scheduled = false
    }

    private let outbox = Mutex(Outbox())
    private let chatSet: Mutex<Set<UUID>>
    /// The server's close decision for this socket.
    let socket: SocketClose
    let queueLimit: Int
    let byteLimit: Int
    private let wake: @Sendable () -> Void

    init(
        id: UUID = .v7(), userID: UUID, sessionID: UUID, expiresAt: Date, chats: Set<UUID>, queueLimit: Int, byteLimit: Int = 4 << 20, socket: SocketClose,
        wake: @escaping @Sendable () -> Void = {}
    ) {
        self.byteLimit = byteLimit
        self.id = id
        self.socket = socket
        self.userID = userID
        self.sessionID = sessionID
        self.expiresAt = expiresAt
        self.chatSet = Mutex(chats)
        self.queueLimit = queueLimit
        self.wake = wake
    }

    var chats: Set<UUID> { self.chatSet.withLock { $0 } }
    func follows(_ chatID: UUID) -> Bool { self.chatSet.withLock { $0.contains(chatID) } }
    func addChat(_ chatID: UUID) { self.chatSet.withLock { _ = $0.insert(chatID) } }
    func removeChat(_ chatID: UUID) { self.chatSet.withLock { _ = $0.remove(chatID) } }

    private enum Queued {
        case queued(wake: Bool)
        case dropped
        case overflow
    }

    /// Queues an item. The queue is bounded in frames and in bytes: typing
    /// and presence are dropped once it is half full by either measure; a
    /// full queue closes the connection with 4008.
    func enqueue(_ item: Outgoing) {
        let cost = item.cost
        let result = self.outbox.withLock { outbox -> Queued in
            switch item {
            case .typing, .presence:
                if outbox.items.count >= self.queueLimit / 2 || outbox.bytes + cost > self.byteLimit / 2 { return .dropped }
            default:
                if outbox.items.count >= self.queueLimit || outbox.bytes + cost > self.byteLimit { return .overflow }
            }
            return Self.append(item, cost: cost, to: &outbox)
        }
        switch result {
        case .queued(let wake): if wake { self.wake() }
        case .dropped: break
        case .overflow: self.close(4008, "too slow: send queue overflow; reconnect with resume")
        }
    }

    private static func append(_ item: Outgoing, cost: Int, to outbox: inout Outbox) -> Queued {
        outbox.items.append(item)
        outbox.bytes += cost
        defer { outbox.scheduled = true }
        return .queued(wake: !outbox.scheduled)
    }

    /// The next item for the handler; nil when the queue is empty (the next
    /// `enqueue` wakes the handler again).
    func next() -> Outgoing? {
        self.outbox.withLock { outbox in
            guard let item = outbox.items.popFirst() else {
                outbox.scheduled = false
                return nil
            }
            outbox.bytes -= item.cost
            return item
        }
    }

    /// Closes with `code` (the first code asked for wins).
    func close(_ code: UInt16, _ reason: String) {
        self.socket.close(code, reason)
    }

    /// Closes with `code` at once (no further client frame is acted on), but
    /// writes the close frame after what is already queued: a client closed
    /// for a protocol violation still gets the answers to the frames before it.
    func closeAfterQueued(_ code: UInt16, _ reason: String) {
        guard self.socket.decide(code) else { return }
        let item = Outgoing.close(code: code, reason: reason)
        if case .queued(wake: true) = self.outbox.withLock({ Self.append(item, cost: item.cost, to: &$0) }) { self.wake() }
    }

    /// The server decided to close: no client frame is acted on any more.
    var isClosing: Bool { self.socket.isClosing }
}
