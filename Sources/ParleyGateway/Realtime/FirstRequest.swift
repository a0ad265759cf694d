import HummingbirdCore
import Logging
import NIOCore
import NIOWebSocket
import ParleyCore

/// How much a connection reads when its socket is readable: up to
/// `perWakeUp` reads of at most `bytes` each (NIO's defaults, set here
/// because `SocketMachine.inboxBytes` counts on them: it is what a WebSocket
/// still receives after it stops reading).
enum ConnectionReads {
    static let perWakeUp: UInt = 4
    static let bytes = 65536
}

/// The first handler of every connection: reads the first request head from
/// the raw bytes, decides what the connection is, then steps aside.
/// - The head must arrive within the head timeout (a client that trickles
///   its headers, sends nothing or stops sending is dropped; later requests
///   on a kept-alive connection are bounded by the HTTP idle timeout).
/// - A plain WebSocket handshake (`WebSocketHandshake`) that the route
///   accepts is answered here with the 101, and the WebSocket handlers take
///   the channel over.
/// - An upgrade that cannot be taken (`WebSocketHandshake.Refusal`: a
///   foreign browser origin, a broken handshake, another version) is
///   answered here with problem+json and closed.
/// - Anything else goes to the HTTP/1.1 pipeline, installed now
///   (`GatewayChannel.configureHTTP`), with the bytes read so far.
final class FirstRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let gateway: GatewayChannel
    private let logger: Logger
    /// What the connection turned out to be, for the connection's task.
    private var decided: EventLoopPromise<GatewayChannel.Upgrade>?
    private var buffered: ByteBuffer?
    private var timeout: Scheduled<Void>?
    /// A head is read whole, within the head timeout, up to what the HTTP
    /// decoder accepts (its header list and a request line); a longer one
    /// goes to the decoder at once, which refuses it.
    private var headLimit: Int { self.gateway.http1.httpDecoder.maxHeaderListSize + 8192 }

    init(gateway: GatewayChannel, logger: Logger, decided: EventLoopPromise<GatewayChannel.Upgrade>) {
        self.gateway = gateway
        self.logger = logger
        self.decided = decided
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.timeout = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.gateway.headTimeout.milliseconds) * 1_000_000)) {
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        // what came before was searched already, all but its last 3 bytes (a head sent byte by byte costs linear work)
        let searched = max(0, (self.buffered?.readableBytes ?? 0) - 3)
        var buffer = self.buffered.take() ?? ByteBuffer()  // taken: appending does not copy what came before
        buffer.writeBuffer(&incoming)
        let end = RequestHead.end(in: buffer, from: searched)
        if end == nil && buffer.readableBytes < self.headLimit {  // need more of the head
            self.buffered = buffer
            return
        }
        let headBytes = buffer.readableBytesView.prefix(end ?? buffer.readableBytes)
        // only a head with an Upgrade field is read here: every other request is the HTTP pipeline's
        if RequestHead.hasField("upgrade:", in: headBytes) {
            let head = RequestHead(headBytes)
            if let end, let handshake = WebSocketHandshake(head),
                let session = self.gateway.webSocket(handshake.target, handshake.origins, handshake.host)
            {
                // frames the client sent right behind its head go to the frame decoder
                buffer.moveReaderIndex(forwardBy: end + 4)
                self.buffered = buffer
                self.openWebSocket(context: context, handshake: handshake, session: session)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
            let allowed = self.gateway.allowed
            if let refusal = WebSocketHandshake.Refusal(
                of: head, whole: end != nil, path: RealtimeRoutes.webSocketPath,
                originAllowed: { RealtimeRoutes.originAllowed($0, allowed: allowed, host: $1) }
            ) {
                context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(string: refusal.response)), promise: nil)
                context.close(promise: nil)
                self.decide(.success(.answered))
                return
            }
        }
        do {
            let upgrade = try self.gateway.configureHTTP(channel: context.channel, logger: self.logger)
            if let decided = self.decided.take() { upgrade.cascade(to: decided) }
        } catch {
            self.decide(.failure(error))
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(self.wrapInboundOut(buffer))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// A client that stops sending before its head is whole gets nothing more
    /// (Hummingbird lets connections half-close; NIO's HTTP upgrade, which
    /// used to see this first, closed them too).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeout?.cancel()
        self.timeout = nil
        if let buffered = self.buffered.take(), buffered.readableBytes > 0 {
            context.fireChannelRead(self.wrapInboundOut(buffered))
        }
        self.decide(.failure(ChannelError.ioOnClosedChannel))  // closed before a whole head came
    }

    private func decide(_ result: Result<GatewayChannel.Upgrade, any Error>) {
        self.decided.take()?.completeWith(result)
    }

    /// The 101, then the handlers NIO's upgrader would install (frame encoder,
    /// decoder, protocol-error closes) and the socket's own.
    private func openWebSocket(context: ChannelHandlerContext, handshake: WebSocketHandshake, session: WebSocketSession) {
        context.write(self.wrapOutboundOut(ByteBuffer(string: handshake.response)), promise: nil)
        do {
            let pipeline = context.pipeline.syncOperations
            try pipeline.addHandler(WebSocketFrameEncoder())
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: self.gateway.maxFrameSize)))
            try pipeline.addHandler(WebSocketProtocolErrorHandler())
            try pipeline.addHandler(WebSocketConnectionHandler(session: session, headerToken: handshake.bearerToken))
            context.flush()
            self.decide(.success(.webSocket))
        } catch {
            self.logger.error("could not open a WebSocket", metadata: ["error": "\(error)"])
            self.buffered = nil
            self.decide(.failure(error))
            context.close(promise: nil)
        }
    }
}
