import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The gateway's connections: HTTP/1.1, and the upgrade of `GET /v1/ws` to a
/// WebSocket driven by channel handlers alone (`WebSocketConnectionHandler`).
/// An HTTP connection is served by a task for as long as it lasts, as
/// Hummingbird does; an upgraded socket's task ends at the upgrade, so an
/// idle WebSocket costs its channel and handler state, not a task.
struct GatewayChannel: ServerChildChannel, HTTPChannelHandler {
    enum Upgrade: Sendable {
        /// Now handled by the WebSocket handlers.
        case webSocket
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade that was refused (another path): a bare 400.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let upgrade: EventLoopFuture<Upgrade>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let http1: HTTP1Channel.Configuration
    let maxFrameSize: Int
    /// The handler of an upgraded `/v1/ws`, given the upgrade request's
    /// `Authorization` token; nil refuses the upgrade.
    let webSocket: @Sendable (HTTPRequestHead) -> WebSocketSession?

    init(
        responder: @escaping HTTPChannelHandler.Responder, http1: HTTP1Channel.Configuration, maxFrameSize: Int,
        webSocket: @escaping @Sendable (HTTPRequestHead) -> WebSocketSession?
    ) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.http1 = http1
        self.maxFrameSize = maxFrameSize
        self.webSocket = webSocket
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let sessions = NIOLoopBoundBox<(WebSocketSession, String?)?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
                maxFrameSize: self.maxFrameSize,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    guard let session = self.webSocket(head) else { return channel.eventLoop.makeSucceededFuture(HTTPHeaders?.none) }
                    var token: String?
                    if let authorization = head.headers.first(name: "authorization"), authorization.lowercased().hasPrefix("bearer ") {
                        token = String(authorization.dropFirst(7))
                    }
                    sessions.value = (session, token)
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
            let upgrade = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: pipeline)
            return Value(upgrade: upgrade, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgrade.get() {
            case .webSocket:
                return  // the channel's handlers own it from here
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
