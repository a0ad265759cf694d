import Foundation
import HTTPTypes
import Hummingbird
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
///   its headers, or sends nothing, is dropped; later requests on a
///   kept-alive connection are bounded by the HTTP idle timeout).
/// - A plain WebSocket handshake for `/v1/ws` (`WebSocketHandshake`) that
///   the route accepts is answered here with the 101, and the WebSocket
///   handlers take the channel over.
/// - A WebSocket upgrade from a browser origin that is not allowed (neither
///   listed nor this gateway's own) gets `403 forbidden_origin`
///   (problem+json): the HTTP upgrade can only answer a refused upgrade
///   with a bare 400.
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
    /// How much of `buffered` is known not to hold the head's end.
    private var scanned = 0
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
        var buffer: ByteBuffer
        if var buffered = self.buffered {
            self.buffered = nil  // the only reference now: appending does not copy what came before
            buffered.writeBuffer(&incoming)
            buffer = buffered
        } else {
            buffer = incoming
        }
        // searched from where the last read's search stopped: a head trickled a byte at a time costs linear work
        let end = WebSocketHandshake.headEnd(in: buffer, from: self.scanned)
        if end == nil && buffer.readableBytes < self.headLimit {  // need more of the head
            self.scanned = max(0, buffer.readableBytes - 3)
            self.buffered = buffer
            return
        }
        let headBytes = buffer.readableBytesView.prefix(end ?? buffer.readableBytes)
        if let end, let handshake = WebSocketHandshake(head: headBytes),
            let session = self.gateway.webSocket(handshake.target, handshake.origins, handshake.host)
        {
            // frames the client sent right behind its head go to the frame decoder
            buffer.moveReaderIndex(forwardBy: end + 4)
            self.buffered = buffer
            self.openWebSocket(context: context, handshake: handshake, session: session)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        // only a head with an Origin or Upgrade header can be refused here
        if Self.hasHeader("origin:", in: headBytes) || Self.hasHeader("upgrade:", in: headBytes),
            let refusal = self.refusal(for: String(decoding: headBytes, as: UTF8.self), whole: end != nil)
        {
            var response = context.channel.allocator.buffer(capacity: 256)
            response.writeString(refusal)
            context.writeAndFlush(self.wrapOutboundOut(response), promise: nil)
            context.close(promise: nil)
            self.decide(.success(.answered))
            return
        }
        do {
            let upgrade = try self.gateway.configureHTTP(channel: context.channel, logger: self.logger)
            if let decided = self.decided {
                self.decided = nil
                upgrade.cascade(to: decided)
            }
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
        if let buffered = self.buffered, buffered.readableBytes > 0 {
            self.buffered = nil
            context.fireChannelRead(self.wrapInboundOut(buffered))
        }
        self.decide(.failure(ChannelError.ioOnClosedChannel))  // closed before a whole head came
    }

    private func decide(_ result: Result<GatewayChannel.Upgrade, any Error>) {
        guard let decided = self.decided else { return }
        self.decided = nil
        decided.completeWith(result)
    }

    /// The 101, then the handlers NIO's upgrader would install (frame encoder,
    /// decoder, protocol-error closes) and the socket's own.
    private func openWebSocket(context: ChannelHandlerContext, handshake: WebSocketHandshake, session: WebSocketSession) {
        var response = context.channel.allocator.buffer(capacity: 160)
        response.writeString(handshake.response)
        context.write(self.wrapOutboundOut(response), promise: nil)
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

    /// Whether a line of `head` starts with `name` (lowercase, colon included), in any case.
    static func hasHeader(_ name: String, in head: some Collection<UInt8>) -> Bool {
        let name = Array("\n\(name)".utf8)
        var matched = 0
        for byte in head {
            let lower = (65...90).contains(byte) ? byte | 0x20 : byte
            if lower == name[matched] {
                matched += 1
                if matched == name.count { return true }
            } else {
                matched = lower == name[0] ? 1 : 0
            }
        }
        return false
    }

    /// The raw answer to a first head that asks for a WebSocket and cannot
    /// have one: a foreign browser origin (403 `forbidden_origin`), or an
    /// upgrade of `GET /v1/ws` without `Connection: Upgrade` or one
    /// `Sec-WebSocket-Key` (400 `invalid_websocket_handshake`) or of another
    /// protocol version than 13 (426 with `Sec-WebSocket-Version: 13`, RFC
    /// 6455 §4.4). NIO's upgrade would drop such a connection without a word,
    /// or send it back to itself. Nil: the general way answers. A head that
    /// is not `whole` (longer than the HTTP decoder takes) is refused for its
    /// origin only: the lines of its handshake may come after.
    func refusal(for head: String, whole: Bool) -> String? {
        var lines = head.split(separator: "\r\n")[...]
        let requestLine = lines.popFirst()?.split(separator: " ") ?? []
        var upgrade = false
        var connectionUpgrade = false
        var origins: [String] = []
        var host: String?
        var keys: [String] = []
        var versions: [String] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "upgrade" where value.lowercased().contains("websocket"): upgrade = true
            case "connection" where value.lowercased().contains("upgrade"): connectionUpgrade = true
            case "origin": origins.append(value)
            case "host": host = value
            case "sec-websocket-key": keys.append(value)
            case "sec-websocket-version": versions.append(value)
            default: break
            }
        }
        guard upgrade else { return nil }
        guard RealtimeRoutes.originAllowed(origins, allowed: self.gateway.allowed, host: host) else {
            return Self.response(APIError.forbiddenOrigin)
        }
        let path = requestLine.count == 3 ? requestLine[1].split(separator: "?", maxSplits: 1).first.map(String.init) : nil
        guard whole, requestLine.first == "GET", path == "/v1/ws" else { return nil }
        guard connectionUpgrade, keys.count == 1, keys.first?.isEmpty == false, versions.count <= 1 else {
            return Self.response(.badRequest("invalid_websocket_handshake", "a WebSocket upgrade needs Connection: Upgrade, one Sec-WebSocket-Key and at most one Sec-WebSocket-Version"))
        }
        guard versions == ["13"] else {
            let refused = APIError(
                .upgradeRequired, "unsupported_websocket_version",
                "this server speaks WebSocket version 13 (Sec-WebSocket-Version: 13)"
            )
            return Self.response(refused, headers: "Sec-WebSocket-Version: 13\r\n")
        }
        return nil
    }

    /// A problem+json answer that closes the connection, as raw HTTP/1.1.
    static func response(_ error: APIError, headers: String = "") -> String {
        let body = String(decoding: error.body(), as: UTF8.self)
        return "HTTP/1.1 \(error.status.code) \(error.status.reasonPhrase)\r\nContent-Type: application/problem+json\r\n\(headers)"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }
}
