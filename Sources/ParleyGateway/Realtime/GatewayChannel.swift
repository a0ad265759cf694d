import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The gateway's connections. The first request head decides
/// (`FirstRequestHandler`): a plain WebSocket handshake for `/v1/ws` is
/// answered at once and the socket is driven by channel handlers alone
/// (`WebSocketConnectionHandler`); anything else gets the HTTP/1.1 pipeline
/// (`configureHTTP`), which can still upgrade to the same WebSocket. An HTTP
/// connection is served by a task for as long as it lasts, as Hummingbird
/// does; a WebSocket's task ends once the head is read, so an idle
/// WebSocket costs its channel and handler state, not a task.
struct GatewayChannel: ServerChildChannel, HTTPChannelHandler {
    enum Upgrade: Sendable {
        /// Now handled by the WebSocket handlers.
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade that was refused (another path): a bare 400.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// Answered and closed by the first handler (a refused origin).
        case answered
    }

    struct Value: ServerChildChannelValue {
        let upgrade: EventLoopFuture<Upgrade>
        let channel: any Channel
    }

    /// Decides whether a WebSocket upgrade is accepted, from its request
    /// target, `Origin` values and `Host`: the session of the socket, or nil
    /// to refuse the upgrade.
    typealias WebSocketRoute = @Sendable (_ target: String, _ origins: [String], _ host: String?) -> WebSocketSession?

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let maxFrameSize: Int
    let webSocket: WebSocketRoute
    /// Browser origins allowed to open a WebSocket (besides the gateway's own).
    let allowed: Set<String>
    /// How long a connection's first request head may take to arrive.
    let headTimeout: Duration

    init(
        responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration, maxFrameSize: Int,
        allowedOrigins: Set<String>, headTimeout: Duration, webSocket: @escaping WebSocketRoute
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.http1 = http1
        self.maxFrameSize = maxFrameSize
        self.allowed = allowedOrigins
        self.headTimeout = headTimeout
        self.webSocket = webSocket
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // Each connection keeps its receive buffer for the next read: start it
            // small (a request head, a client frame), it grows when reads fill it.
            // An idle WebSocket then holds 512 bytes instead of 2 KiB.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: ConnectionReads.bytes)
            )
            try channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: ConnectionReads.perWakeUp)
            let upgrade = channel.eventLoop.makePromise(of: Upgrade.self)
            do {
                try channel.pipeline.syncOperations.addHandler(FirstRequestHandler(gateway: self, logger: logger, decided: upgrade))
            } catch {
                upgrade.fail(error)
                throw error
            }
            return Value(upgrade: upgrade.futureResult, channel: channel)
        }
    }

    /// NIO's HTTP/1.1 pipeline with its WebSocket upgrade, after the first
    /// handler: for every connection whose first head is not a plain
    /// WebSocket handshake.
    func configureHTTP(channel: any Channel, logger: Logger) throws -> EventLoopFuture<Upgrade> {
        let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
        let sessions = NIOLoopBoundBox<(WebSocketSession, String?)?>(nil, eventLoop: channel.eventLoop)
        let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
            maxFrameSize: self.maxFrameSize,
            shouldUpgrade: { channel, head in
                attempted.value = true
                guard head.method == .GET, let session = self.webSocket(head.uri, head.headers["origin"], head.headers.first(name: "host")) else {
                    return channel.eventLoop.makeSucceededFuture(HTTPHeaders?.none)
                }
                sessions.value = (session, WebSocketHandshake.bearerToken(head.headers.first(name: "authorization")))
                return channel.eventLoop.makeSucceededFuture(HTTPHeaders?.some(HTTPHeaders()))
            },
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard let (session, token) = sessions.value else { throw ChannelError.inappropriateOperationForState }
                    sessions.value = nil
                    // Right after NIO's frame encoder and decoder: the handler writes
                    // data frames already encoded (`WireFrame`) through the encoder's
                    // context and control frames through the encoder, so no outbound
                    // handler may sit between the two (it would see one kind only).
                    try channel.pipeline.syncOperations.addHandler(WebSocketConnectionHandler(session: session, headerToken: token))
                    return Upgrade.webSocket
                }
            }
        )
        let configuration = NIOTypedHTTPServerUpgradeConfiguration(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    try channel.pipeline.syncOperations.addHandlers(self.http1.additionalChannelHandlers())
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionStateHandler(idleTimeout: self.http1.idleTimeout.map { .nanoseconds($0.nanoseconds) }, logger: logger)
                    )
                    let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                    return attempted.value ? .refused(asyncChannel) : .notUpgraded(asyncChannel)
                }
            }
        )
        var pipeline = NIOUpgradableHTTPServerPipelineConfiguration<Upgrade>(upgradeConfiguration: configuration)
        pipeline.enablePipelining = false  // HTTP is pipelined by NIOAsyncChannel
        pipeline.enableErrorHandling = false
        pipeline.enableResponseHeaderValidation = false
        pipeline.decoderConfiguration.maxHeaderFieldSize = self.http1.httpDecoder.maxHeaderFieldSize
        pipeline.decoderConfiguration.maxHeaderListSize = self.http1.httpDecoder.maxHeaderListSize
        pipeline.decoderConfiguration.maxHeaderFieldCount = self.http1.httpDecoder.maxHeaderFieldCount
        return try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgrade.get() {
            case .webSocket, .answered:
                return  // the channel's handlers own it from here, or it is closed
            case .notUpgraded(let http1):
                await self.handleHTTP(asyncChannel: http1, logger: logger)
            case .refused(let http1):
                try await http1.executeThenClose { _, outbound in
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])), .end(nil),
                    ])
                }
            }
        } catch {
            logger.debug("connection ended before its first request was handled", metadata: ["error": "\(error)"])
        }
    }

    /// NIO upgrades only on a connection's first request: a later request
    /// asking for a WebSocket is redirected to the same URI with the
    /// connection closed, so that the client retries on a new one.
    static func redirectingLateUpgrades(_ responder: @escaping HTTPChannelHandler.Responder) -> HTTPChannelHandler.Responder {
        struct RedirectClose: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                try await responder(request, writer, channel)
                return
            }
            var path = request.uri.path
            if let query = request.uri.query { path += "?\(query)" }
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: path]))
            throw RedirectClose()
        }
    }
}
