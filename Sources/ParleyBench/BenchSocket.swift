import Foundation
import NIOCore
import NIOHTTP1
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

    /// Opens `ws://…/v1/ws` of the gateway at `base` (http://host:port) and waits for `ready`.
    static func open(base: URL, token: String, onFrame: @escaping @Sendable (String) -> Void) async throws -> BenchSocket {
        guard let host = base.host else { throw BenchError("no host in \(base)") }
        let port = base.port ?? 80
        let hello = String(decoding: try JSONSerialization.data(withJSONObject: ["type": "hello", "token": token]), as: UTF8.self)
        let ready = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)  // completing twice is a no-op
        let state = Locked(State())
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let request = UpgradeRequestHandler(host: "\(host):\(port)")
                        let upgrader = NIOWebSocketClientUpgrader(
                            requestKey: Self.randomKey(), maxFrameSize: 1 << 20,
                            upgradePipelineHandler: { channel, _ in
                                channel.eventLoop.makeCompletedFuture {
                                    try channel.pipeline.syncOperations.addHandler(
                                        FrameHandler(hello: hello, ready: ready, onFrame: onFrame) { code in
                                            state.withLock {
                                                $0.closed = true
                                                if $0.closeCode == nil { $0.closeCode = code }
                                            }
                                        }
                                    )
                                }
                            }
                        )
                        try channel.pipeline.syncOperations.addHTTPClientHandlers(
                            withClientUpgrade: (upgraders: [upgrader], completionHandler: { context in
                                context.pipeline.removeHandler(name: UpgradeRequestHandler.name, promise: nil)
                            })
                        )
                        try channel.pipeline.syncOperations.addHandler(request, name: UpgradeRequestHandler.name)
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
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

/// Sends the upgrade request once connected.
private final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    static let name = "bench.upgrade-request"
    let host: String

    init(host: String) {
        self.host = host
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: self.host)
        headers.add(name: "Content-Length", value: "0")
        context.write(self.wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/ws", headers: headers))), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // a response that is not the upgrade: refused
        if case .head(let head) = self.unwrapInboundIn(data) {
            context.fireErrorCaught(BenchError("WebSocket upgrade refused: HTTP \(head.status.code)"))
            context.close(promise: nil)
        }
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
