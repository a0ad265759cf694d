import Foundation
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import ParleyChat
import ParleyCore

/// Drives one `/v1/ws` socket on its event loop, with no Swift task of its
/// own: client frames go through `SocketMachine`, whose actions this carries
/// out; I/O (the hello's checks, a send, a catch-up read) runs as a short
/// task whose result comes back to the event loop.
///
/// Outbound, the connection's queue is drained here (`pump`): every item
/// taken in one turn of the loop is written, then flushed once. Writing
/// stops while the channel is not writable and resumes when it is again;
/// meanwhile the queue's own limits apply (typing and presence dropped
/// first, then 4008).
///
/// Closing: once the server closes (`SocketClose`), no client frame is acted
/// on, the close frame goes out, and the TCP connection is dropped when the
/// client answers it or after `SocketClose.handshakeTimeout`.
final class WebSocketConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let session: WebSocketSession
    /// A token sent as `Authorization: Bearer` on the upgrade request.
    private let headerToken: String?
    private var machine: SocketMachine
    private var context: ChannelHandlerContext?
    /// The context of NIO's `WebSocketFrameEncoder`: what is written through
    /// it goes to the handlers after the encoder, as bytes.
    private var wire: ChannelHandlerContext?
    private var closing: SocketClose?
    private var connection: Connection?
    private var outbound: OutboundState?
    /// The hello's checks and the registration that follows, or the release
    /// of a slot taken for a socket that was gone by then: the release at
    /// the socket's end waits for it. Dropped once the socket is registered:
    /// a finished task keeps the memory its work used (its stack slabs, a
    /// few KiB) for as long as anything holds it.
    private var pending: Task<Void, Never>?
    /// Registered: the queue may be drained.
    private var live = false
    /// An outbound step (a read from PostgreSQL) is running: the queue waits.
    private var stepping = false
    private var closeSent = false
    private var active = true
    private var readingPaused = false
    private var readHeld = false
    private var fragments: ByteBuffer?
    private var fragmentsAreText = true
    private var helloTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    /// Frames wait for the rate limit (`SocketMachine.Action.drainLater`).
    private var paceTimer: Scheduled<Void>?
    /// Its place on its loop's heartbeat wheel.
    private var heartbeat: (wheel: HeartbeatWheel, slot: Int)?
    private var lastHeard = NIODeadline.now()
    private var writableWaiters: [EventLoopPromise<Void>] = []

    init(session: WebSocketSession, headerToken: String?) {
        self.session = session
        self.headerToken = headerToken
        self.machine = SocketMachine(limits: session.limits)
    }

    private var limits: RealtimeLimits { self.session.limits }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.wire = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        if self.wire == nil {
            // the upgrade installs the encoder: without it no frame could go out
            self.session.logger.error("a WebSocket without NIO's frame encoder; closing it")
            context.close(promise: nil)
        }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        self.closing = SocketClose(
            sendClose: { code, reason in loop.execute { bound.value.writeClose(code, reason) } },
            decided: { loop.execute { bound.value.closeDecided() } }
        )
        self.session.realtime.sockets.opened()
        if self.session.realtime.sockets.isDraining { self.closeNow(1012, "server restarting; reconnect with resume") }
        // closed above already (no encoder): `ended()` ran, nothing may outlive it
        guard self.active else { return }
        self.helloTimer = loop.scheduleTask(in: .init(self.limits.helloTimeout)) {
            bound.value.run(bound.value.machine.helloTimedOut())
        }
        let wheel = self.session.realtime.heartbeats.wheel(on: loop)
        self.heartbeat = (wheel, wheel.add(self))
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.ended()
        self.context = nil
        self.wire = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.ended()
        context.fireChannelInactive()
    }

    /// The socket is gone: timers stop, and a registered connection is released.
    private func ended() {
        guard self.active else { return }
        self.active = false
        self.helloTimer?.cancel()
        self.closeTimer?.cancel()
        self.paceTimer?.cancel()
        if let (wheel, slot) = self.heartbeat { wheel.remove(self, slot: slot) }
        self.heartbeat = nil
        for waiter in self.writableWaiters { waiter.fail(ChannelError.ioOnClosedChannel) }
        self.writableWaiters = []
        _ = self.closing?.decide(1006)
        let (pending, connection, session, sockets) = (self.pending, self.connection, self.session, self.session.realtime.sockets)
        if pending == nil && connection == nil {
            sockets.released()  // never said hello: nothing was taken
        } else {
            // still being admitted or registered (wait for it), or registered
            Task {
                await pending?.value
                if let connection { await session.release(connection) }
                sockets.released()
            }
        }
        // the connection's wake-up and the close decision call back into this
        // handler: dropping them here ends the cycle
        self.connection = nil
        self.closing = nil
        self.pending = nil
        self.outbound = nil
    }

    /// Every `heartbeat` (`HeartbeatWheel`): a ping, or the end of a client
    /// that answered nothing (no pong, no frame) for three of them.
    func beat() {
        guard let context, self.active else { return }
        if NIODeadline.now() - self.lastHeard > TimeAmount(self.limits.heartbeat) * 3 {
            self.closeNow(1001, "no answer for \(self.limits.heartbeat * 3)")
            context.close(promise: nil)
            return
        }
        guard !self.closeSent else { return }
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        self.lastHeard = .now()
        guard !frame.rsv1 && !frame.rsv2 && !frame.rsv3 else { return self.protocolError("no extension was negotiated") }
        switch frame.opcode {
        case .connectionClose:
            self.clientClosed(frame, context: context)
        case .ping:
            guard !self.closeSent else { return }
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .text, .binary:
            guard self.fragments == nil else { return self.protocolError("a new message began before the last one ended") }
            if frame.fin {
                self.received(frame.unmaskedData, text: frame.opcode == .text)
            } else {
                self.fragments = frame.unmaskedData
                self.fragmentsAreText = frame.opcode == .text
            }
        case .continuation:
            guard var buffer = self.fragments else { return self.protocolError("a continuation without a message") }
            var data = frame.unmaskedData
            guard buffer.readableBytes + data.readableBytes <= self.limits.frameBytes else {
                self.fragments = nil
                self.closeNow(1009, "message too big (at most \(self.limits.frameBytes) bytes)")
                return
            }
            buffer.writeBuffer(&data)
            if frame.fin {
                self.fragments = nil
                self.received(buffer, text: self.fragmentsAreText)
            } else {
                self.fragments = buffer
            }
        default:
            break  // pong: heard
        }
    }

    /// A whole message: one frame (NIO's decoder closes with 1009 above
    /// `frameBytes`) or fragments joined (bounded above).
    private func received(_ data: ByteBuffer, text: Bool) {
        // once the server closed, frames are read but never acted on
        guard !(self.closing?.isClosing ?? true) else { return }
        self.run(self.machine.received(text ? .text(String(buffer: data)) : .binary))
    }

    private func clientClosed(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        if self.closeSent {
            // the handshake is complete
            context.close(promise: nil)
            return
        }
        _ = self.closing?.decide(1000)
        self.run(self.machine.closeDecided())
        self.closeSent = true
        // the client's code is echoed (RFC 6455 5.5.1), unless it is one no
        // endpoint may send, or the payload is malformed: then 1002
        var data = frame.unmaskedData
        var reply = context.channel.allocator.buffer(capacity: 2)
        if data.readableBytes > 0 {
            let code = data.readInteger(as: UInt16.self)
            let valid = code.map { (1000...1003).contains($0) || (1007...1014).contains($0) || (3000...4999).contains($0) } ?? false
            reply.writeInteger(valid ? code! : 1002)
        }
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply))).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func protocolError(_ reason: String) {
        self.fragments = nil
        self.closeNow(1002, reason)
    }

    // MARK: machine actions

    private func run(_ actions: [SocketMachine.Action]) {
        for action in actions {
            switch action {
            case .authenticate(let token, let resume):
                self.helloTimer?.cancel()
                self.authenticate(token: token ?? self.headerToken, resume: resume)
            case .perform(let frame):
                guard let connection = self.connection, !connection.isClosing else {
                    self.run(self.machine.closeDecided())
                    return
                }
                self.perform(frame, connection: connection)
            case .reply(let text):
                if let connection = self.connection {
                    connection.enqueue(.frame(text))
                } else {
                    self.write(text)
                    self.context?.flush()
                }
            case .close(let code, let reason, let afterQueued):
                if afterQueued, let connection = self.connection {
                    connection.closeAfterQueued(code, reason)
                } else {
                    self.closeNow(code, reason)
                }
            case .pauseReading:
                self.readingPaused = true
            case .resumeReading:
                self.readingPaused = false
                if self.readHeld {
                    self.readHeld = false
                    self.context?.read()
                }
            case .drainLater(let delay):
                guard let bound = self.bound, let loop = self.context?.eventLoop else { return }
                self.paceTimer = loop.scheduleTask(in: .init(delay)) {
                    let handler = bound.value
                    handler.paceTimer = nil
                    handler.run(handler.machine.paced())
                }
            }
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.readingPaused {
            self.readHeld = true
        } else {
            context.read()
        }
    }

    private var bound: NIOLoopBound<WebSocketConnectionHandler>? {
        self.context.map { NIOLoopBound(self, eventLoop: $0.eventLoop) }
    }

    private func authenticate(token: String?, resume: [UUID: Int64]) {
        guard let bound = self.bound, let loop = self.context?.eventLoop else { return }
        let session = self.session
        self.pending = Task {
            let admission = await session.admit(token: token)
            // what the admission leads to (registration, or freeing the slot) is part of it
            switch try? await loop.submit({ bound.value.admitted(admission, resume: resume) }).get() {
            case .register(let connection, let cameOnline)?:
                let latest = await session.register(connection, cameOnline: cameOnline)
                loop.execute { bound.value.registered(catchUpTo: latest) }
            case .leave(let userID, let connectionID)?:
                // gone (or closed) while the hello was checked: its slot is freed,
                // without an "offline" for a user never announced online here
                await session.leave(userID: userID, connectionID: connectionID, announce: false)
            case .nothing?, nil:
                break
            }
        }
    }

    /// What an admission leads to, off the event loop.
    private enum AfterAdmission: Sendable {
        case register(Connection, cameOnline: Bool)
        case leave(userID: UUID, connectionID: UUID)
        case nothing
    }

    /// The hello's checks ended; returns the work they lead to.
    private func admitted(_ admission: WebSocketSession.Admission, resume: [UUID: Int64]) -> AfterAdmission {
        switch admission {
        case .refused(let code, let reason):
            self.closeNow(code, reason)
            return .nothing
        case .admitted(let identity, let connectionID, let cameOnline, let positions):
            guard self.active, let closing = self.closing, !closing.isClosing, let bound = self.bound, let loop = self.context?.eventLoop else {
                return .leave(userID: identity.userID, connectionID: connectionID)
            }
            let connection = Connection(
                id: connectionID, userID: identity.userID, sessionID: identity.sessionID, expiresAt: identity.expiresAt, chats: Set(positions.keys),
                queueLimit: self.limits.queuedFrames, byteLimit: self.limits.queuedBytes, socket: closing,
                wake: { loop.execute { bound.value.pump() } }
            )
            self.connection = connection
            var delivered = positions
            for (chat, seq) in resume where delivered[chat] != nil { delivered[chat] = min(seq, delivered[chat] ?? seq) }
            self.outbound = OutboundState(userID: identity.userID, delivered: delivered)
            // Queued before the connection can receive live events: ready, then
            // the catch-up that reads PostgreSQL after the subscriptions are in place.
            connection.enqueue(.frame(ServerFrame.ready(connectionID: connection.id, userID: identity.userID, heartbeat: self.limits.heartbeat)))
            connection.enqueue(.catchUp(upTo: nil))
            return .register(connection, cameOnline: cameOnline)
        }
    }

    private func registered(catchUpTo latest: [UUID: Int64]?) {
        guard self.active else { return }
        // registration is done: the release at the end has nothing to wait for
        self.pending = nil
        self.outbound?.catchUpTo = latest
        self.live = true
        self.run(self.machine.authenticated())
        self.pump()
    }

    private func perform(_ frame: ClientFrame, connection: Connection) {
        guard let bound = self.bound, let loop = self.context?.eventLoop else { return }
        let session = self.session
        Task {
            let outcome = await session.perform(frame, connection: connection)
            loop.execute {
                let handler = bound.value
                handler.run(handler.machine.performed(outcome))
            }
        }
    }

    // MARK: outbound

    fileprivate func write(_ text: String) {
        self.write(WireFrame.text(text))
    }

    /// Writes a text frame already encoded for the wire (`WireFrame`; an
    /// event's is shared with the other sockets it goes to) past NIO's frame
    /// encoder, which control frames go through: both are written at once,
    /// in the order they are asked for.
    fileprivate func write(_ frame: ByteBuffer) {
        guard let wire = self.wire, !self.closeSent else { return }
        wire.write(NIOAny(frame), promise: nil)
    }

    /// Writes what the connection's queue holds, flushing once at the end.
    private func pump() {
        guard self.live, !self.stepping, let context, let connection, var outbound = self.outbound else { return }
        var wrote = false
        defer {
            self.outbound = outbound
            if wrote { context.flush() }
        }
        while !self.closeSent {
            guard context.channel.isWritable else { return }  // resumed by channelWritabilityChanged
            guard let item = connection.next() else { return }
            switch outbound.take(item, follows: connection.follows) {
            case .skip:
                continue
            case .write(let frame):
                self.write(frame)
                wrote = true
            case .close(let code, let reason):
                self.outbound = outbound
                self.writeClose(code, reason)
                return
            case .step(let step):
                self.stepping = true
                self.outbound = outbound
                self.start(step, connection: connection)
                return
            }
        }
        // closed: what is still queued is dropped
        while connection.next() != nil {}
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for waiter in self.writableWaiters { waiter.succeed() }
            self.writableWaiters = []
            self.pump()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Succeeds once the channel can take more.
    fileprivate func writable(on loop: any EventLoop) -> EventLoopFuture<Void> {
        guard let context, self.active else { return loop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
        if context.channel.isWritable { return loop.makeSucceededVoidFuture() }
        let promise = loop.makePromise(of: Void.self)
        self.writableWaiters.append(promise)
        return promise.futureResult
    }

    /// Runs an outbound step that needs I/O; the queue resumes after it.
    private func start(_ step: OutboundState.Step, connection: Connection) {
        guard let bound = self.bound, let loop = self.context?.eventLoop else { return }
        let steps = OutboundSteps(bound: bound, loop: loop, connection: connection, store: self.session.store, resumeLimit: self.limits.resumeLimit)
        let logger = self.session.logger
        Task {
            do {
                try await steps.run(step)
                loop.execute {
                    let handler = bound.value
                    handler.stepping = false
                    handler.pump()
                }
            } catch {
                // The socket is gone, or PostgreSQL failed mid catch-up: either way
                // the client must reconnect and resume, never stay open and silent.
                loop.execute {
                    let handler = bound.value
                    handler.stepping = false
                    if handler.active {
                        logger.warning("a catch-up failed; closing the socket", metadata: ["error": "\(error)"])
                        connection.close(1011, "temporarily unavailable; reconnect with resume")
                        handler.pump()  // a close decided earlier may be waiting in the queue
                    }
                }
            }
        }
    }

    /// Runs `body` on the loop with the socket's outbound state.
    fileprivate func withOutbound<T>(_ body: (inout OutboundState, FrameWriter) -> T) -> T? {
        guard self.active, var outbound = self.outbound else { return nil }
        let result = body(&outbound, FrameWriter(handler: self))
        self.outbound = outbound
        self.context?.flush()
        return result
    }

    // MARK: closing

    /// A close was decided (here or on another thread): nothing more is
    /// acted on, and the client has `handshakeTimeout` from now to finish
    /// the handshake, whether the close frame goes out at once or after
    /// what is queued (which a client that does not read never lets out).
    private func closeDecided() {
        guard self.active, let context else { return }
        self.run(self.machine.closeDecided())
        guard self.closeTimer == nil else { return }
        self.closeTimer = context.eventLoop.scheduleTask(in: .init(SocketClose.handshakeTimeout)) {
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.closeNow(1012, "server restarting; reconnect with resume")
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Closes with `code` unless a close was decided already.
    private func closeNow(_ code: UInt16, _ reason: String) {
        guard let closing = self.closing else { return }
        if closing.decide(code) { self.writeClose(code, reason) }
    }

    /// Writes the close frame of a decided close, then gives the client
    /// `handshakeTimeout` to answer before dropping the connection.
    private func writeClose(_ code: UInt16, _ reason: String) {
        guard self.active, let context, !self.closeSent else { return }
        self.closeDecided()
        self.closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code)))
        data.writeString(String(reason.utf8.prefix(123)) ?? "")
        context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
    }
}

/// Writes frames to a socket from an outbound step, on its event loop.
private struct FrameWriter {
    let handler: WebSocketConnectionHandler

    func callAsFunction(_ text: String) { self.handler.write(text) }
    func callAsFunction(_ frame: ByteBuffer) { self.handler.write(frame) }
}

/// The outbound steps that read PostgreSQL, run as a short task: pages are
/// read off the event loop and written on it, each waiting for the socket.
private struct OutboundSteps: Sendable {
    let bound: NIOLoopBound<WebSocketConnectionHandler>
    let loop: any EventLoop
    let connection: Connection
    let store: ChatStore
    let resumeLimit: Int

    /// Messages read from PostgreSQL at once during a catch-up.
    static let pageSize = 100
    /// Gaps and catch-ups a socket read from PostgreSQL on its own (beside
    /// the reads an instance makes once per chat for all of its sockets).
    static let ownReads = Counter(label: "parley_socket_catch_up_reads_total")

    struct Gone: Error {}

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable (inout OutboundState, FrameWriter) -> T) async throws -> T {
        let bound = self.bound
        guard let result = try await self.loop.submit({ bound.value.withOutbound(body) }).get() else { throw Gone() }
        return result
    }

    func run(_ step: OutboundState.Step) async throws {
        switch step {
        case .fill(let chatID, let after, let seq, let payload):
            // messages a live event skipped over (out-of-order publishes from
            // other instances, or events lost while Redis was away)
            Self.ownReads.increment()
            try await self.replay([SeqRange(chatID: chatID, after: after, through: seq - 1)])
            let follows = self.connection.follows(chatID)
            try await self.onLoop { state, write in
                if state.accept(chatID: chatID, seq: seq, follows: follows) { write(payload) }
            }
        case .catchUp:
            Self.ownReads.increment()
            var latest = try await self.onLoop { state, _ in state.catchUpTo.take() }
            if latest == nil { latest = try await self.store.chatPositions(of: self.connection.userID) }
            let known = latest ?? [:]
            try await self.replay(try await self.onLoop { state, _ in state.missed(upTo: known) })
        case .chatAdded(let chatID, let since):
            guard self.connection.follows(chatID), let chat = try await self.store.chat(chatID, viewer: self.connection.userID) else { return }
            let frame = ServerFrame.encoded(ServerFrame.ChatEvent(chat: ChatBody(chat: chat, members: nil)))
            // everything after the join, including what was sent before this connection subscribed
            let start = try await self.onLoop { state, write in
                write(frame)
                let start = max(state.delivered[chatID] ?? since, since)
                state.delivered[chatID] = start
                return start
            }
            if chat.lastSeq > start { try await self.replay([SeqRange(chatID: chatID, after: start, through: chat.lastSeq)]) }
        case .chatChanged(let chatID, let views):
            guard self.connection.follows(chatID), let frame = try await views.frame(for: self.connection.userID) else { return }
            try await self.onLoop { _, write in write(frame) }
        }
    }

    /// Messages a page at a time (`CatchUpPlan`): one page in memory, each
    /// written once the socket can take it; `resync` for a chat too far behind.
    func replay(_ ranges: [SeqRange]) async throws {
        let connection = self.connection
        let plan = CatchUpPlan(ranges.filter { connection.follows($0.chatID) }, pageSize: Self.pageSize, resyncAbove: self.resumeLimit)
        if !plan.resync.isEmpty {
            try await self.onLoop { state, write in
                for range in plan.resync {
                    // too much to replay: the client pages through REST history
                    write(ServerFrame.json(["type": "resync", "chat_id": range.chatID.lowercased]))
                    state.delivered[range.chatID] = max(state.delivered[range.chatID] ?? 0, range.through)
                }
            }
        }
        for page in plan.pages {
            let messages = try await self.store.messages(in: page).map { message in
                (chatID: message.chatID, seq: message.seq, frame: ServerFrame.message(message))
            }
            try await self.onLoop { state, write in
                for message in messages where state.accept(chatID: message.chatID, seq: message.seq, follows: connection.follows(message.chatID)) {
                    write(message.frame)
                }
            }
            let (bound, loop) = (self.bound, self.loop)
            try await loop.flatSubmit { bound.value.writable(on: loop) }.get()
        }
    }
}

