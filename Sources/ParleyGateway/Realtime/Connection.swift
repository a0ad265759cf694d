import Foundation
import Synchronization

/// What a connection's writer processes, in order.
enum Outgoing: Sendable {
    /// A frame for this connection only (ready, ack, error, pong).
    case frame(String)
    /// A message event of a chat; delivered once, in seq order (gaps are read from PostgreSQL).
    case message(chatID: UUID, seq: Int64, payload: String)
    /// Any other chat event (message_updated, read), forwarded as is.
    case chatEvent(chatID: UUID, payload: String)
    /// Typing of another user; dropped first under pressure, never echoed.
    case typing(chatID: UUID, userID: UUID, payload: String)
    case presence(userID: UUID, online: Bool, payload: String)
    /// Send everything after the delivered seq of every chat (resume, Redis gap).
    case catchUp
    /// The user joined a chat whose last seq was `since` at that moment.
    case chatAdded(UUID, since: Int64)
    case chatChanged(UUID)
    case chatRemoved(UUID)
}

/// One WebSocket on this instance: who it is, which chats it follows, and a
/// bounded outbound queue drained by its own writer task (a slow reader only
/// ever slows itself down).
final class Connection: Sendable {
    let id = UUID.v7()
    let userID: UUID
    let sessionID: UUID
    /// When the access token that opened it expires: the socket is closed
    /// with 4001 then (RealtimeService's expiry sweep; the client refreshes and resumes).
    let expiresAt: Date
    let stream: AsyncStream<Outgoing>
    private let continuation: AsyncStream<Outgoing>.Continuation
    private let queued = Atomic<Int>(0)
    private let chatSet: Mutex<Set<UUID>>
    /// The server's close decision for this socket.
    let socket: SocketClose
    let queueLimit: Int

    init(userID: UUID, sessionID: UUID, expiresAt: Date, chats: Set<UUID>, queueLimit: Int, socket: SocketClose) {
        self.socket = socket
        self.userID = userID
        self.sessionID = sessionID
        self.expiresAt = expiresAt
        self.chatSet = Mutex(chats)
        self.queueLimit = queueLimit
        (self.stream, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    var chats: Set<UUID> { self.chatSet.withLock { $0 } }
    func follows(_ chatID: UUID) -> Bool { self.chatSet.withLock { $0.contains(chatID) } }
    func addChat(_ chatID: UUID) { self.chatSet.withLock { _ = $0.insert(chatID) } }
    func removeChat(_ chatID: UUID) { self.chatSet.withLock { _ = $0.remove(chatID) } }

    /// Queues an item. Typing and presence are dropped once the queue is half
    /// full; a full queue closes the connection with 4008.
    func enqueue(_ item: Outgoing) {
        let depth = self.queued.load(ordering: .relaxed)
        switch item {
        case .typing, .presence:
            if depth >= self.queueLimit / 2 { return }
        default:
            if depth >= self.queueLimit {
                self.close(4008, "too slow: send queue overflow; reconnect with resume")
                return
            }
        }
        self.queued.add(1, ordering: .relaxed)
        self.continuation.yield(item)
    }

    /// Called by the writer for each item it takes.
    func dequeued() {
        self.queued.subtract(1, ordering: .relaxed)
    }

    func finish() {
        self.continuation.finish()
    }

    /// Closes with `code` (the first code asked for wins).
    func close(_ code: UInt16, _ reason: String) {
        self.socket.close(code, reason)
    }

    /// The server decided to close: no client frame is acted on any more.
    var isClosing: Bool { self.socket.isClosing }
}

import ParleyCore
