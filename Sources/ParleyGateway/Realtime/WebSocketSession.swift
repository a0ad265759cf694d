import Foundation
import HTTPTypes
import HiredisNIO
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import ParleyCore
import ServiceLifecycle
import Synchronization
import ParleyChat

/// One client on `/v1/ws`: hello, ready, resume, then frames both ways.
struct WebSocketSession {
    let realtime: RealtimeService
    let tokens: AccessTokens
    let revocations: SessionRevocations
    let logger: Logger

    var limits: RealtimeLimits { self.realtime.limits }
    var store: ChatStore { self.realtime.chats.store }

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, headers: HTTPFields) async {
        let close = SocketClose { code, reason in try? await outbound.close(.unknown(code), reason: reason) }
        // The session, and a watchdog that stops it once the server has closed
        // and the client let the handshake time run out: whichever ends first
        // ends the other. Returning ends the TCP connection (Hummingbird waits
        // for the client's close frame for at most its own close timeout).
        let connection = await withTaskGroup(of: Connection?.self) { group in
            group.addTask { await self.serve(inbound: inbound, outbound: outbound, close: close, headers: headers) }
            group.addTask {
                await close.handshakeExpired()
                return nil
            }
            var connection = await group.next() ?? nil
            group.cancelAll()
            while let result = await group.next() { connection = connection ?? result }
            return connection
        }
        guard let connection else { return }
        // not in the (possibly cancelled) session task: presence must be cleaned up
        await self.realtime.hub.unregister(connection)
        if (try? await self.realtime.presence.disconnected(userID: connection.userID, connectionID: connection.id)) == true {
            var logger = self.logger
            logger[metadataKey: "user.id"] = "\(connection.userID.lowercased)"
            await self.realtime.presence.announce(connection.userID, online: false, logger: logger)
        }
    }

    /// hello, registration, then the read loop; returns the registered
    /// connection (for the caller to unregister), or nil if it never got there.
    func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, close: SocketClose, headers: HTTPFields) async -> Connection? {
        var messages = inbound.messages(maxSize: self.limits.frameBytes).makeAsyncIterator()
        // hello within the time limit; a token may also come with the upgrade request
        let helloArrived = Atomic<Bool>(false)
        let timer = Task {
            try await Task.sleep(for: self.limits.helloTimeout)
            if !helloArrived.load(ordering: .relaxed) { close.close(4001, "no hello within \(self.limits.helloTimeout)") }
        }
        defer { timer.cancel() }
        var headerToken: String?
        if let authorization = headers[.authorization], authorization.lowercased().hasPrefix("bearer ") { headerToken = String(authorization.dropFirst(7)) }

        let helloFrame: (token: String?, resume: [UUID: Int64])
        do {
            guard let first = try await messages.next(), !close.isClosing else { return nil }
            helloArrived.store(true, ordering: .relaxed)
            timer.cancel()
            guard case .text(let text) = first, case .hello(let token, let resume) = try ClientFrame.parse(text) else {
                close.close(4001, "the first frame must be hello")
                return nil
            }
            helloFrame = (token, resume)
        } catch {
            if let invalid = error as? ClientFrame.Invalid {
                try? await outbound.write(.text(ServerFrame.error(ref: invalid.ref, code: invalid.code, detail: invalid.detail)))
            }
            close.close(4001, "the first frame must be hello")
            return nil
        }
        guard let token = helloFrame.token ?? headerToken, let identity = await self.tokens.verify(token),
            (try? await self.revocations.isRevoked(identity.sessionID)) == false
        else {
            close.close(4001, "invalid or expired token")
            return nil
        }
        // a slot among the user's connections, taken atomically on every instance;
        // if Redis cannot say, the connection is refused (1013: try again later)
        let connectionID = UUID.v7()
        let cameOnline: Bool
        switch try? await self.realtime.presence.admit(userID: identity.userID, connectionID: connectionID, limit: self.limits.connectionsPerUser) {
        case .admitted(let first)?:
            cameOnline = first
        case .refused?:
            close.close(1008, "too many connections for this user")
            return nil
        case nil:
            close.close(1013, "temporarily unavailable; try again later")
            return nil
        }
        let positions: [UUID: Int64]
        do {
            positions = try await self.store.chatPositions(of: identity.userID)
        } catch {
            _ = try? await self.realtime.presence.disconnected(userID: identity.userID, connectionID: connectionID)
            close.close(1013, "temporarily unavailable; try again later")
            return nil
        }
        let connection = Connection(
            id: connectionID, userID: identity.userID, sessionID: identity.sessionID, expiresAt: identity.expiresAt, chats: Set(positions.keys),
            queueLimit: self.limits.queuedFrames, byteLimit: self.limits.queuedBytes, socket: close
        )
        var logger = self.logger
        logger[metadataKey: "ws.connection"] = "\(connection.id.lowercased)"
        logger[metadataKey: "user.id"] = "\(identity.userID.lowercased)"

        // Queued before the connection can receive live events: ready, then the
        // catch-up that reads PostgreSQL after the subscriptions are in place.
        connection.enqueue(.frame(ServerFrame.json([
            "type": "ready", "connection_id": connection.id.lowercased, "user_id": identity.userID.lowercased,
            "heartbeat_s": Int(self.limits.heartbeat.components.seconds),
        ])))
        var delivered = positions
        for (chat, seq) in helloFrame.resume where delivered[chat] != nil { delivered[chat] = min(seq, delivered[chat] ?? seq) }
        connection.enqueue(.catchUp)

        await self.realtime.hub.register(connection)
        // Membership or a logout may have changed between the first read and
        // the subscriptions taking effect: look again now that nothing can be
        // missed. What this read finds is where the first catch-up stops.
        let latest = await self.realtime.reconcile(user: identity.userID)
        if cameOnline { await self.realtime.presence.announce(identity.userID, online: true, logger: logger) }

        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                let writer = Writer(
                    connection: connection, outbound: outbound, store: self.store, delivered: delivered, catchUpTo: latest, resumeLimit: self.limits.resumeLimit,
                    logger: logger
                )
                group.addTask { await writer.run() }
                await self.readLoop(&messages, connection: connection, logger: logger)
                connection.finish()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            connection.close(1012, "server restarting; reconnect with resume")
        }
        return connection
    }

    func readLoop(_ messages: inout WebSocketInboundMessageStream.AsyncIterator, connection: Connection, logger: Logger) async {
        var badFrames: [ContinuousClock.Instant] = []
        var frames = TokenBucket(capacity: self.limits.framesPerSecond, perSecond: self.limits.framesPerSecond)
        var typing = TokenBucket(capacity: self.limits.typingPerSecond, perSecond: self.limits.typingPerSecond)
        while true {
            let message: WebSocketMessage?
            do {
                message = try await messages.next()
            } catch {
                return  // too big (closed 1009 by the framework) or the connection failed
            }
            guard let message else { return }
            // Once the server closed, frames are read (the client's close
            // frame ends the loop) but never acted on.
            if connection.isClosing { continue }
            guard frames.take() else {
                connection.closeAfterQueued(1008, "too many frames (at most \(self.limits.framesPerSecond) a second)")
                continue
            }
            guard case .text(let text) = message else {
                self.reject(connection, ref: nil, code: "invalid_frame", detail: "frames are JSON text", &badFrames)
                continue
            }
            let frame: ClientFrame
            do {
                frame = try ClientFrame.parse(text)
            } catch {
                self.reject(connection, ref: error.ref, code: error.code, detail: error.detail, &badFrames)
                continue
            }
            if case .typing = frame, !typing.take() {
                connection.enqueue(.frame(ServerFrame.error(ref: frame.ref, code: "rate_limited", detail: "at most \(self.limits.typingPerSecond) typing frames a second")))
                continue
            }
            do {
                try await self.handle(frame, connection: connection, logger: logger)
            } catch {
                // the same mapping as the REST edge: the client's mistakes count
                // towards the bad-frame limit, our dependencies' outages do not
                guard let problem = APIError.from(error) else {
                    logger.error("frame failed", metadata: ["error": "\(error)"])
                    connection.enqueue(.frame(ServerFrame.error(ref: frame.ref, code: "unavailable", detail: "try again")))
                    continue
                }
                if problem.status.code < 500 {
                    self.reject(connection, ref: frame.ref, code: problem.code, detail: problem.detail, &badFrames)
                } else {
                    connection.enqueue(.frame(ServerFrame.error(ref: frame.ref, code: problem.code, detail: problem.detail)))
                }
            }
        }
    }

    /// Answers a bad frame with an error frame; too many in a minute close the connection (1008).
    func reject(_ connection: Connection, ref: String?, code: String, detail: String, _ recent: inout [ContinuousClock.Instant]) {
        connection.enqueue(.frame(ServerFrame.error(ref: ref, code: code, detail: detail)))
        let now = ContinuousClock.now
        recent = recent.filter { now - $0 < .seconds(60) } + [now]
        if recent.count > self.limits.badFramesPerMinute { connection.closeAfterQueued(1008, "too many bad frames") }
    }

    func handle(_ frame: ClientFrame, connection: Connection, logger: Logger) async throws {
        switch frame {
        case .hello(_, _):
            throw ChatError.invalid(.invalidFrame, "hello was already received")
        case .ping(let ref):
            var pong: [String: Any] = ["type": "pong"]
            if let ref { pong["ref"] = ref }
            connection.enqueue(.frame(ServerFrame.json(pong)))
        case .send(let ref, let chatID, let request):
            guard connection.follows(chatID) else { throw ChatError.chatNotFound }
            // nothing is stored for a socket the server is closing, or whose
            // session ended (a lookup in memory while the revocation view is fresh)
            guard !connection.isClosing else { return }
            if try await self.revocations.isRevoked(connection.sessionID) {
                connection.close(4001, "session ended")
                return
            }
            // the ack goes out before the message event reaches this connection
            _ = try await self.realtime.chats.send(request, chatID: chatID, senderID: connection.userID, logger: logger) { message in
                connection.enqueue(.frame(ServerFrame.encoded(ServerFrame.Ack(ref: ref, message: MessageBody(message)))))
            }
        case .typing(_, let chatID, let active):
            guard connection.follows(chatID) else { throw ChatError.chatNotFound }
            try await self.realtime.chats.typing(chatID: chatID, userID: connection.userID, active: active, logger: logger)
        case .read(_, let chatID, let seq):
            guard connection.follows(chatID) else { throw ChatError.chatNotFound }
            try await self.realtime.chats.markRead(chatID: chatID, userID: connection.userID, seq: seq, logger: logger)
        }
    }
}

extension ClientFrame {
    var ref: String? {
        switch self {
        case .hello: return nil
        case .send(let ref, _, _), .typing(let ref, _, _), .read(let ref, _, _), .ping(let ref): return ref
        }
    }
}

/// Drains a connection's queue onto the socket: every message once, in seq
/// order per chat, the gaps read from PostgreSQL.
struct Writer {
    let connection: Connection
    let outbound: WebSocketOutboundWriter
    let store: ChatStore
    var delivered: [UUID: Int64]
    /// Where the first catch-up stops: each chat's last seq, read after the
    /// socket's subscriptions took effect (nil: the catch-up reads it).
    var catchUpTo: [UUID: Int64]?
    let resumeLimit: Int
    let logger: Logger
    var presenceSent: [UUID: Bool] = [:]

    init(
        connection: Connection, outbound: WebSocketOutboundWriter, store: ChatStore, delivered: [UUID: Int64], catchUpTo: [UUID: Int64]? = nil,
        resumeLimit: Int, logger: Logger
    ) {
        self.connection = connection
        self.outbound = outbound
        self.store = store
        self.delivered = delivered
        self.catchUpTo = catchUpTo
        self.resumeLimit = resumeLimit
        self.logger = logger
    }

    func run() async {
        var writer = self
        do {
            for await item in self.connection.stream {
                self.connection.dequeued(item)
                try await writer.process(item)
            }
        } catch {
            // The socket is gone, or PostgreSQL failed mid catch-up: either way
            // the client must reconnect and resume, never stay open and silent.
            if !Task.isCancelled {
                self.logger.warning("writer stopped; closing the socket", metadata: ["error": "\(error)"])
                self.connection.close(1011, "temporarily unavailable; reconnect with resume")
            }
        }
    }

    mutating func process(_ item: Outgoing) async throws {
        switch item {
        case .frame(let text):
            try await self.write(text)
        case .message(let chatID, let seq, let payload):
            guard self.connection.follows(chatID), let last = self.delivered[chatID] else { return }
            if seq <= last { return }
            if seq > last + 1 { try await self.fill(chatID, after: last, before: seq) }
            try await self.write(payload)
            self.delivered[chatID] = seq
        case .chatEvent(let chatID, let payload):
            guard self.connection.follows(chatID) else { return }
            try await self.write(payload)
        case .typing(let chatID, let userID, let payload):
            guard self.connection.follows(chatID), userID != self.connection.userID else { return }
            try await self.write(payload)
        case .presence(let userID, let online, let payload):
            guard userID != self.connection.userID, self.presenceSent[userID] != online else { return }
            self.presenceSent[userID] = online
            try await self.write(payload)
        case .catchUp:
            // everything after the delivered seq of every chat, up to where each
            // chat is now (for the first one, as the registration read it)
            let latest: [UUID: Int64]
            if let known = self.catchUpTo.take() {
                latest = known
            } else {
                latest = try await self.store.chatPositions(of: self.connection.userID)
            }
            try await self.replay(self.delivered.compactMap { chatID, seq in
                latest[chatID].map { SeqRange(chatID: chatID, after: seq, through: $0) }
            })
        case .chatAdded(let chatID, let since):
            guard self.connection.follows(chatID), let chat = try await self.store.chat(chatID, viewer: self.connection.userID) else { return }
            try await self.write(ServerFrame.encoded(ServerFrame.ChatEvent(chat: ChatBody(chat: chat, members: nil))))
            // everything after the join, including what was sent before this connection subscribed
            let start = max(self.delivered[chatID] ?? since, since)
            self.delivered[chatID] = start
            if chat.lastSeq > start { try await self.fill(chatID, after: start, before: chat.lastSeq + 1) }
        case .chatChanged(let chatID, let views):
            guard self.connection.follows(chatID), let frame = try await views.frame(for: self.connection.userID) else { return }
            try await self.write(frame)
        case .chatRemoved(let chatID):
            self.delivered[chatID] = nil
            try await self.write(ServerFrame.json(["type": "chat_removed", "chat_id": chatID.lowercased]))
        case .close(let code, let reason):
            await self.connection.socket.sendFrame(code, reason)
        }
    }

    /// Sends the messages a live event skipped over (out-of-order publishes
    /// from other instances, or events lost while Redis was away).
    mutating func fill(_ chatID: UUID, after: Int64, before: Int64) async throws {
        try await self.replay([SeqRange(chatID: chatID, after: after, through: before - 1)])
    }

    /// Messages a page at a time (`CatchUpPlan`): one page in memory, each
    /// write waiting for the socket; `resync` for a chat too far behind.
    mutating func replay(_ ranges: [SeqRange]) async throws {
        let plan = CatchUpPlan(ranges.filter { self.connection.follows($0.chatID) }, pageSize: Self.pageSize, resyncAbove: self.resumeLimit)
        for range in plan.resync {
            // too much to replay: the client pages through REST history
            try await self.write(ServerFrame.json(["type": "resync", "chat_id": range.chatID.lowercased]))
            self.delivered[range.chatID] = max(self.delivered[range.chatID] ?? 0, range.through)
        }
        for page in plan.pages {
            for message in try await self.store.messages(in: page) where self.connection.follows(message.chatID) {
                guard let last = self.delivered[message.chatID], message.seq > last else { continue }
                try await self.write(ServerFrame.encoded(ServerFrame.MessageEvent(message: MessageBody(message))))
                self.delivered[message.chatID] = message.seq
            }
        }
    }

    /// Messages read from PostgreSQL at once during a catch-up.
    static let pageSize = 100

    func write(_ text: String) async throws {
        try await self.outbound.write(.text(text))
    }
}
