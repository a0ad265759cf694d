import Foundation
import NIOCore
import NIOPosix
import NIOWebSocket

/// An authenticated WebSocket to a gateway, as a client opens it: `hello`
/// with the access token, then `ready`. Every later text frame goes to
/// `onFrame`, called on the connection's event loop (keep it short).
///
/// Plain SwiftNIO handlers, no task per socket: the load generator shares
/// the machine with the servers it measures, so its own cost per frame
/// must stay small.
final class BenchSocket: Sendable {
    struct State {
        var closed = false
        var closeCode: UInt16?
    }

    let channel: any Channel
    /// Shared with the socket's frame handler, which records the server's close code.
    private let state: Locked<State>

    private init(channel: any Channel, state: Locked<State>) {
        self.channel = channel
        self.state = state
    }

    /// The address each gateway (`host:port`) was reached at, kept from the
    /// first socket that connected there. `connect(host:port:)` resolves the
    /// name on every call (a `getaddrinfo` on a Dispatch queue, then Happy
    /// Eyeballs' state machine and its timers): CPU the load generator would
    /// take from the servers it measures, once per socket.
    private static let addresses = Locked([String: SocketAddress]())

    /// Opens `ws://…/v1/ws` of the gateway at `base` (http://host:port) and waits for `ready`.
    static func open(base: URL, token: String, onFrame: @escaping @Sendable (String) -> Void) async throws -> BenchSocket {
        guard let host = base.host else { throw BenchError("no host in \(base)") }
        let port = base.port ?? 80
        let hello = String(decoding: try JSONSerialization.data(withJSONObject: ["type": "hello", "token": token]), as: UTF8.self)
        let ready = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)  // completing twice is a no-op
        let state = Locked(State())
        let gateway = "\(host):\(port)"
        let known = Self.addresses.withLock { $0[gateway] }
        let channel: any Channel
        do {
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let frames = FrameHandler(hello: hello, ready: ready, onFrame: onFrame) { code in
                            state.withLock {
                                $0.closed = true
                                if $0.closeCode == nil { $0.closeCode = code }
                            }
                        }
                        try channel.pipeline.syncOperations.addHandler(HandshakeHandler(host: gateway, frames: frames))
                    }
                }
            if let known {
                channel = try await bootstrap.connect(to: known).get()
            } else {
                channel = try await bootstrap.connect(host: host, port: port).get()
                if let reached = channel.remoteAddress {
                    Self.addresses.withLock { $0[gateway] = reached }
                }
            }
        } catch {
            // the next socket resolves the name again (the gateway may have moved)
            if known != nil { Self.addresses.withLock { $0[gateway] = nil } }
            ready.fail(error)
            throw error
        }
        let socket = BenchSocket(channel: channel, state: state)
        channel.closeFuture.whenComplete { _ in
            socket.state.withLock { $0.closed = true }
            ready.fail(BenchError("closed before ready (code \(socket.closeCode.map(String.init) ?? "none"))"))
        }
        // a gateway that upgrades but never answers hello must not hang the run
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(30)) {
            ready.fail(BenchError("no ready within 30 s of hello"))
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        try await ready.futureResult.get()
        return socket
    }

    static func randomKey() -> String {
        Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    var isClosed: Bool { self.state.withLock { $0.closed } }
    var closeCode: UInt16? { self.state.withLock { $0.closeCode } }

    /// Queues a text frame (not waiting for the write: a socket that fails shows as closed).
    func send(_ text: String) throws {
        guard !self.isClosed else { throw BenchError("socket closed (code \(self.closeCode.map(String.init) ?? "none"))") }
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: text))
        self.channel.writeAndFlush(frame, promise: nil)
    }

    func close() async {
        guard !self.isClosed else { return }
        var data = ByteBuffer()
        data.write(webSocketErrorCode: .normalClosure)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data)
        try? await self.channel.writeAndFlush(frame).get()
        // the server answers with its close frame and closes the TCP connection
        let closed = self.channel.closeFuture
        let deadline = self.channel.eventLoop.scheduleTask(in: .seconds(5)) { self.channel.close(promise: nil) }
        try? await closed.get()
        deadline.cancel()
    }
}

/// The opening handshake on the raw bytes, as a plain client sends it: the
/// request once connected; on the 101, NIO's frame encoder and decoder and
/// the socket's `FrameHandler` take over (with any bytes that came behind
/// the answer). Unlike NIO's HTTP client upgrade, it adds no HTTP codec or
/// upgrade handler to each socket; measured, that saves the load generator
/// a little CPU per connect, within the noise (BENCHMARKS, "A direct
/// WebSocket handshake").
private final class HandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let host: String
    let frames: FrameHandler
    var received: ByteBuffer?

    init(host: String, frames: FrameHandler) {
        self.host = host
        self.frames = frames
    }

    func channelActive(context: ChannelHandlerContext) {
        let request = "GET /v1/ws HTTP/1.1\r\nHost: \(self.host)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(BenchSocket.randomKey())\r\nSec-WebSocket-Version: 13\r\n\r\n"
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        var received = self.received ?? ByteBuffer()
        received.writeBuffer(&incoming)
        self.received = received
        let view = received.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if received.readableBytes > 16384 { self.refuse(context: context, "no end to the upgrade answer") }
            return
        }
        let head = String(decoding: view[view.startIndex..<end.lowerBound], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 101 "), head.lowercased().contains("\r\nsec-websocket-accept:") else {
            // a response that is not the upgrade: refused
            self.refuse(context: context, "WebSocket upgrade refused: \(head.prefix(12).dropFirst(9))")
            return
        }
        received.moveReaderIndex(forwardBy: end.upperBound - view.startIndex)
        self.received = received
        do {
            try context.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
            try context.pipeline.syncOperations.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
            try context.pipeline.syncOperations.addHandler(self.frames)
        } catch {
            self.refuse(context: context, "\(error)")
            return
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if let received = self.received, received.readableBytes > 0 {
            self.received = nil
            context.fireChannelRead(self.wrapInboundOut(received))
        }
    }

    private func refuse(context: ChannelHandlerContext, _ reason: String) {
        self.received = nil
        self.frames.ready.fail(BenchError(reason))
        context.close(promise: nil)
    }
}

/// hello → ready, then text frames to `onFrame`; answers pings; records the close code.
private final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let hello: String
    let ready: EventLoopPromise<Void>
    let onFrame: @Sendable (String) -> Void
    let onClose: (UInt16?) -> Void
    var isReady = false
    var fragments = ByteBuffer()

    init(hello: String, ready: EventLoopPromise<Void>, onFrame: @escaping @Sendable (String) -> Void, onClose: @escaping (UInt16?) -> Void) {
        self.hello = hello
        self.ready = ready
        self.onFrame = onFrame
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: self.hello))
        context.writeAndFlush(self.wrapOutboundOut(frame), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .continuation:
            var data = frame.unmaskedData
            guard frame.fin else {
                self.fragments.writeBuffer(&data)
                return
            }
            var text: String
            if self.fragments.readableBytes > 0 {
                self.fragments.writeBuffer(&data)
                text = String(buffer: self.fragments)
                self.fragments.clear()
            } else {
                text = String(buffer: data)
            }
            if self.isReady {
                self.onFrame(text)
            } else if ScannedFrame(text).type == "ready" {
                self.isReady = true
                self.ready.succeed()
            } else {
                text = String(text.prefix(200))
                self.ready.fail(BenchError("expected ready, got \(text)"))
                context.close(promise: nil)
            }
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(self.wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            var data = frame.unmaskedData
            self.onClose(data.readWebSocketErrorCode().map { UInt16(webSocketErrorCode: $0) })
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.onClose(nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.ready.fail(error)
        context.close(promise: nil)
    }
}
