public import Foundation
public import NIOCore
import NIOHTTP1
import NIOPosix

/// A minimal HTTP/1.1 keep-alive client connection: one request at a time,
/// as a client library would use it. The benchmark's REST load goes through
/// these so that the client's own cost stays small and predictable.
final class HTTPConnection: Sendable {
    public struct Response: Sendable {
        public let status: Int
        public let body: ByteBuffer

        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(self.body.readableBytesView))) as? [String: Any] ?? [:]
        }

        public var text: String { String(buffer: self.body) }
    }

    struct Exchange: Sendable {
        let head: HTTPRequestHead
        let body: ByteBuffer?
        let promise: EventLoopPromise<Response>
    }

    let channel: any Channel
    let host: String

    init(channel: any Channel, host: String) {
        self.channel = channel
        self.host = host
    }

    /// Connects to `url`'s host and port (http only).
    static func connect(_ url: URL, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> HTTPConnection {
        guard url.scheme == "http", let host = url.host else { throw BenchError("only http:// gateway URLs are supported (got \(url))") }
        let port = url.port ?? 80
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ExchangeHandler())
                }
            }
            .connect(host: host, port: port).get()
        return HTTPConnection(channel: channel, host: "\(host):\(port)")
    }

    func request(_ method: HTTPMethod, _ path: String, json: Any? = nil, headers: [(String, String)] = []) async throws -> Response {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: self.host)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        var body: ByteBuffer?
        if let json {
            let data = try JSONSerialization.data(withJSONObject: json)
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: String(data.count))
            body = ByteBuffer(bytes: data)
        } else if method == .POST || method == .PATCH || method == .PUT {
            head.headers.add(name: "Content-Length", value: "0")
        }
        let promise = self.channel.eventLoop.makePromise(of: Response.self)
        self.channel.writeAndFlush(Exchange(head: head, body: body, promise: promise)).cascadeFailure(to: promise)
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await self.channel.close()
    }
}

/// Matches responses to requests in order.
final class ExchangeHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPConnection.Exchange
    typealias OutboundOut = HTTPClientRequestPart

    var pending: [EventLoopPromise<HTTPConnection.Response>] = []
    var status = 0
    var body = ByteBuffer()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let exchange = self.unwrapOutboundIn(data)
        self.pending.append(exchange.promise)
        context.write(self.wrapOutboundOut(.head(exchange.head)), promise: nil)
        if let body = exchange.body { context.write(self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(self.wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.status = Int(head.status.code)
            self.body.clear()
        case .body(var part):
            self.body.writeBuffer(&part)
        case .end:
            guard !self.pending.isEmpty else { return }
            self.pending.removeFirst().succeed(HTTPConnection.Response(status: self.status, body: self.body))
            self.body = ByteBuffer()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.failAll(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(BenchError("connection closed"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: any Error) {
        let pending = self.pending
        self.pending = []
        for promise in pending { promise.fail(error) }
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
