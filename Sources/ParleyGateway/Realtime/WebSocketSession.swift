import Foundation
import HTTPTypes
import HiredisNIO
import Logging
import NIOCore
import ParleyChat
import ParleyCore

/// The I/O steps of one client on `/v1/ws`, each a short task started by its
/// `WebSocketConnectionHandler`: admitting a hello, registering the
/// connection, acting on a frame, releasing it at the end.
struct WebSocketSession: Sendable {
    let realtime: RealtimeService
    let tokens: AccessTokens
    let revocations: SessionRevocations
    let logger: Logger

    var limits: RealtimeLimits { self.realtime.limits }
    var store: ChatStore { self.realtime.chats.store }

    enum Admission: Sendable {
        case admitted(Identity, connectionID: UUID, cameOnline: Bool, positions: [UUID: Int64])
        case refused(UInt16, String)
    }

    /// Checks the token, takes a slot among the user's connections (on every
    /// instance; if Redis cannot say, the connection is refused with 1013),
    /// and reads the user's chats.
    func admit(token: String?) async -> Admission {
        if self.realtime.sockets.isDraining { return .refused(1012, "server restarting; reconnect with resume") }
        guard let token, let identity = await self.tokens.verify(token), (try? await self.revocations.isRevoked(identity.sessionID)) == false else {
            return .refused(4001, "invalid or expired token")
        }
        let connectionID = UUID.v7()
        let cameOnline: Bool
        switch try? await self.realtime.presence.admit(userID: identity.userID, connectionID: connectionID, limit: self.limits.connectionsPerUser) {
        case .admitted(let first)?:
            cameOnline = first
        case .refused?:
            return .refused(1008, "too many connections for this user")
        case nil:
            return .refused(1013, "temporarily unavailable; try again later")
        }
        do {
            let positions = try await self.store.chatPositions(of: identity.userID)
            return .admitted(identity, connectionID: connectionID, cameOnline: cameOnline, positions: positions)
        } catch {
            await self.leave(userID: identity.userID, connectionID: connectionID, announce: false)
            return .refused(1013, "temporarily unavailable; try again later")
        }
    }

    /// Makes the connection receive live events. Membership or a logout may
    /// have changed between the first read and the subscriptions taking
    /// effect: this looks again now that nothing can be missed, and returns
    /// what it found (where the first catch-up stops, and where the
    /// instance's order takes up chats it has not seen yet).
    func register(_ connection: Connection, cameOnline: Bool) async -> [UUID: Int64]? {
        await self.realtime.hub.register(connection)
        let latest = await self.realtime.reconcile(user: connection.userID)
        if let latest { self.realtime.remember(latest) }
        if cameOnline { await self.realtime.presence.announce(connection.userID, online: true, logger: self.logger(for: connection)) }
        return latest
    }

    /// The connection ended: no more events for it, and its presence slot freed.
    func release(_ connection: Connection) async {
        await self.realtime.hub.unregister(connection)
        await self.leave(userID: connection.userID, connectionID: connection.id, announce: true)
    }

    /// Frees a presence slot (`announce`: "offline" if it was the user's last).
    func leave(userID: UUID, connectionID: UUID, announce: Bool) async {
        guard (try? await self.realtime.presence.disconnected(userID: userID, connectionID: connectionID)) == true, announce else { return }
        var logger = self.logger
        logger[metadataKey: "user.id"] = "\(userID.lowercased)"
        await self.realtime.presence.announce(userID, online: false, logger: logger)
    }

    func logger(for connection: Connection) -> Logger {
        var logger = self.logger
        logger[metadataKey: "ws.connection"] = "\(connection.id.lowercased)"
        logger[metadataKey: "user.id"] = "\(connection.userID.lowercased)"
        return logger
    }

    /// Acts on a send, typing or read frame.
    func perform(_ frame: ClientFrame, connection: Connection) async -> SocketMachine.Outcome {
        let logger = self.logger(for: connection)
        do {
            try await self.handle(frame, connection: connection, logger: logger)
            return .done
        } catch {
            // the same mapping as the REST edge: the client's mistakes count
            // towards the bad-frame limit, our dependencies' outages do not
            guard let problem = APIError.from(error) else {
                logger.error("frame failed", metadata: ["error": "\(error)"])
                return .failed(ref: frame.ref, code: "unavailable", detail: "try again")
            }
            if problem.status.code < 500 { return .rejected(ref: frame.ref, code: problem.code, detail: problem.detail) }
            return .failed(ref: frame.ref, code: problem.code, detail: problem.detail)
        }
    }

    private func handle(_ frame: ClientFrame, connection: Connection, logger: Logger) async throws {
        switch frame {
        case .hello, .ping:
            return  // answered by the state machine
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

/// What a connection's queue turns into on its socket: every message once,
/// in seq order per chat. Items that need no I/O are decided here at once
/// (`take`); the rest (a gap read from PostgreSQL, a catch-up, a chat read)
/// become a `Step` that the handler runs as a short task. Pure.
struct OutboundState {
    /// Per followed chat, the last seq written to the socket.
    var delivered: [UUID: Int64]
    /// Where the first catch-up stops: each chat's last seq, read after the
    /// socket's subscriptions took effect (nil: the catch-up reads it).
    var catchUpTo: [UUID: Int64]?
    var presenceSent: [UUID: Bool] = [:]
    let userID: UUID

    enum Decision {
        case skip
        /// A text frame as it goes on the wire (`WireFrame`).
        case write(ByteBuffer)
        case close(UInt16, String)
        case step(Step)
    }

    enum Step: Sendable {
        /// Messages after `after` and before `seq` first, then this one.
        case fill(UUID, after: Int64, seq: Int64, payload: ByteBuffer)
        case catchUp
        case chatAdded(UUID, since: Int64)
        case chatChanged(UUID, ChatViews)
    }

    init(userID: UUID, delivered: [UUID: Int64]) {
        self.userID = userID
        self.delivered = delivered
    }

    mutating func take(_ item: Outgoing, follows: (UUID) -> Bool) -> Decision {
        switch item {
        case .frame(let text):
            return .write(WireFrame.text(text))
        case .message(let chatID, let seq, let payload):
            guard follows(chatID), let last = self.delivered[chatID], seq > last else { return .skip }
            if seq > last + 1 { return .step(.fill(chatID, after: last, seq: seq, payload: payload)) }
            self.delivered[chatID] = seq
            return .write(payload)
        case .chatEvent(let chatID, let payload):
            return follows(chatID) ? .write(payload) : .skip
        case .typing(let chatID, let userID, let payload):
            return follows(chatID) && userID != self.userID ? .write(payload) : .skip
        case .presence(let userID, let online, let payload):
            guard userID != self.userID, self.presenceSent[userID] != online else { return .skip }
            self.presenceSent[userID] = online
            return .write(payload)
        case .catchUp(let upTo):
            // where it stops is known and nothing before it is missing (a connect
            // without resume, as a rule; after a Redis gap, once the instance
            // read what each chat missed): done here, without a task
            if let upTo { self.catchUpTo = upTo }
            if let latest = self.catchUpTo, self.missed(upTo: latest).allSatisfy({ $0.count == 0 }) {
                self.catchUpTo = nil
                return .skip
            }
            return .step(.catchUp)
        case .chatAdded(let chatID, let since):
            return follows(chatID) ? .step(.chatAdded(chatID, since: since)) : .skip
        case .chatChanged(let chatID, let views):
            return follows(chatID) ? .step(.chatChanged(chatID, views)) : .skip
        case .chatRemoved(let chatID):
            self.delivered[chatID] = nil
            return .write(WireFrame.text(ServerFrame.json(["type": "chat_removed", "chat_id": chatID.lowercased])))
        case .close(let code, let reason):
            return .close(code, reason)
        }
    }

    /// The ranges a catch-up replays: everything after the delivered seq of
    /// every chat, up to where each chat is now.
    func missed(upTo latest: [UUID: Int64]) -> [SeqRange] {
        self.delivered.compactMap { chatID, seq in latest[chatID].map { SeqRange(chatID: chatID, after: seq, through: $0) } }
    }

    /// A read message, if the socket has not had it; its frame to write.
    mutating func accept(chatID: UUID, seq: Int64, follows: Bool) -> Bool {
        guard follows, let last = self.delivered[chatID], seq > last else { return false }
        self.delivered[chatID] = seq
        return true
    }
}
