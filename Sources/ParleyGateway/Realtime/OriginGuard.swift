import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ParleyCore

/// Guards the first request of each connection, before Hummingbird's upgrade
/// channel sees it:
/// - its head must arrive within `headTimeout` (a client that trickles its
///   headers, or sends nothing, is dropped; later requests on a kept-alive
///   connection are bounded by the HTTP idle timeout);
/// - a WebSocket upgrade from a browser origin that is not allowed (neither
///   listed nor this gateway's own) gets
///   `403 forbidden_origin` (problem+json) — that channel can only answer a
///   refused upgrade with a bare 400.
/// Sits first in the pipeline, reads the first head from the raw bytes,
/// then steps aside. (A later upgrade on a kept-alive connection is still
/// refused by the WebSocket route, with 400.)
/// How much a connection reads when its socket is readable: up to
/// `perWakeUp` reads of at most `bytes` each (NIO's defaults, set here
/// because `SocketMachine.inboxBytes` counts on them: it is what a WebSocket
/// still receives after it stops reading).
enum ConnectionReads {
    static let perWakeUp: UInt = 4
    static let bytes = 65536
}

struct OriginGuardChannel<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value
    let inner: Inner
    let allowed: Set<String>
    let headTimeout: Duration

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // Each connection keeps its receive buffer for the next read: start it
            // small (a request head, a client frame), it grows when reads fill it.
            // An idle WebSocket then holds 512 bytes instead of 2 KiB.
            try channel.syncOptions?.setOption(
                ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: ConnectionReads.bytes)
            )
            try channel.syncOptions?.setOption(ChannelOptions.maxMessagesPerRead, value: ConnectionReads.perWakeUp)
            try channel.pipeline.syncOperations.addHandler(OriginGuardHandler(allowed: self.allowed, headTimeout: self.headTimeout), position: .first)
        }.flatMap {
            self.inner.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await self.inner.handle(value: value, logger: logger)
    }
}

final class OriginGuardHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let allowed: Set<String>
    let headTimeout: Duration
    private var buffered: ByteBuffer?
    private var timeout: Scheduled<Void>?
    private static let headLimit = 16 * 1024

    init(allowed: Set<String>, headTimeout: Duration) {
        self.allowed = allowed
        self.headTimeout = headTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        self.timeout = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(self.headTimeout.milliseconds) * 1_000_000)) {
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        if var buffered = self.buffered {
            buffered.writeBuffer(&incoming)
            self.buffered = buffered
        } else {
            self.buffered = incoming
        }
        guard let buffer = self.buffered else { return }
        let view = buffer.readableBytesView
        let end = view.firstRange(of: [13, 10, 13, 10])
        if end == nil && buffer.readableBytes < Self.headLimit { return }  // need more of the head
        let headBytes = view.prefix(end.map { $0.lowerBound - view.startIndex } ?? buffer.readableBytes)
        // only a head with an Origin header can be refused (clients that are not browsers send none)
        if Self.hasOriginHeader(headBytes), let refusal = self.refusal(for: String(decoding: headBytes, as: UTF8.self)) {
            self.buffered = nil
            var response = context.channel.allocator.buffer(capacity: 256)
            response.writeString(refusal)
            context.writeAndFlush(self.wrapInboundOut(response), promise: nil)
            context.close(promise: nil)
            return
        }
        self.buffered = nil
        context.fireChannelRead(self.wrapInboundOut(buffer))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeout?.cancel()
        self.timeout = nil
        if let buffered = self.buffered, buffered.readableBytes > 0 {
            self.buffered = nil
            context.fireChannelRead(self.wrapInboundOut(buffered))
        }
    }

    /// Whether a line of `head` starts with `origin:`, in any case.
    static func hasOriginHeader(_ head: some Collection<UInt8>) -> Bool {
        let name = Array("\norigin:".utf8)
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

    /// The raw 403 response when the head is a WebSocket upgrade from a foreign browser origin.
    func refusal(for head: String) -> String? {
        var upgrade = false
        var origins: [String] = []
        var host: String?
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "upgrade", value.lowercased().contains("websocket") { upgrade = true }
            if name == "origin" { origins.append(value) }
            if name == "host" { host = value }
        }
        guard upgrade, !RealtimeRoutes.originAllowed(origins, allowed: self.allowed, host: host) else { return nil }
        let body = String(decoding: APIError.forbiddenOrigin.body(), as: UTF8.self)
        return "HTTP/1.1 403 Forbidden\r\nContent-Type: application/problem+json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }
}
