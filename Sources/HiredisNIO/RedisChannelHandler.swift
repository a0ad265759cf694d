import Logging
import NIOCore

/// Commands written together, and who waits for their replies.
struct RedisOutboundBatch: Sendable {
    enum Commands: Sendable {
        case one(RedisCommand)
        case many([RedisCommand])
    }

    enum Target: Sendable {
        /// One command, one reply.
        case single(EventLoopPromise<RedisValue>)
        /// All replies of the batch at once, in order: one completion (one
        /// hop back to the waiting task) per batch, not per command.
        case batch(EventLoopPromise<[RedisValue]>)
        /// Replies arrive as pushes (SUBSCRIBE and friends), not in request order.
        case none
    }

    var commands: Commands
    var target: Target
    var deadline: NIODeadline

    var count: Int {
        switch self.commands {
        case .one: return 1
        case .many(let commands): return commands.count
        }
    }

    func fail(_ error: any Error) {
        switch self.target {
        case .single(let promise): promise.fail(error)
        case .batch(let promise): promise.fail(error)
        case .none: break
        }
    }
}

/// Sent down the pipeline to fail everything pending and close.
struct RedisCommandTimeoutEvent {}

/// Parses replies (hiredis) and matches them to requests in FIFO order, so that any number of commands
/// can be in flight on one connection (pipelining). Push messages (pub/sub)
/// go to `onPush` instead. When the connection closes or fails, every pending
/// request fails with a clear error.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisOutboundBatch
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var target: RedisOutboundBatch.Target
        var expected: Int
        var replies: [RedisValue]
        var deadline: NIODeadline
    }

    private let decoder = RESPDecoder()
    private var encoder = RESPEncoder()
    private var pending = CircularBuffer<Pending>(initialCapacity: 64)
    private var closedError: RedisError?
    private let onPush: (@Sendable (RedisValue) -> Void)?
    private let timeoutCheckInterval: TimeAmount
    private var timeoutTask: RepeatedTask?
    private let logger: Logger

    init(onPush: (@Sendable (RedisValue) -> Void)?, timeoutCheckInterval: TimeAmount, logger: Logger) {
        self.onPush = onPush
        self.timeoutCheckInterval = timeoutCheckInterval
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timeoutTask = context.eventLoop.scheduleRepeatedTask(
            initialDelay: self.timeoutCheckInterval,
            delay: self.timeoutCheckInterval
        ) { _ in
            let (handler, context) = loopBound.value
            handler.checkTimeouts(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.failAll(RedisError(.connectionClosed, "connection closed"))
    }

    // MARK: outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let batch = self.unwrapOutboundIn(data)
        if let closedError = self.closedError {
            batch.fail(closedError)
            promise?.fail(closedError)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: 48 * batch.count)
        switch batch.commands {
        case .one(let command):
            self.encoder.encode(command, into: &buffer)
        case .many(let commands):
            for command in commands { self.encoder.encode(command, into: &buffer) }
        }
        switch batch.target {
        case .none:
            break
        case .single:
            self.pending.append(Pending(target: batch.target, expected: 1, replies: [], deadline: batch.deadline))
        case .batch:
            var replies: [RedisValue] = []
            replies.reserveCapacity(batch.count)
            self.pending.append(Pending(target: batch.target, expected: batch.count, replies: replies, deadline: batch.deadline))
        }
        context.write(self.wrapOutboundOut(buffer), promise: promise)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is RedisCommandTimeoutEvent {
            self.fail(context: context, RedisError(.commandTimeout, "no reply from Redis in time; connection closed"))
            promise?.succeed(())
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.closedError == nil else { return }
        do {
            try self.decoder.feed(self.unwrapInboundIn(data))
            while let value = try self.decoder.next() {
                self.deliver(value, context: context)
                if self.closedError != nil { return }
            }
        } catch {
            self.fail(context: context, (error as? RedisError) ?? RedisError(.protocolError, "\(error)"))
        }
    }

    private func deliver(_ value: RedisValue, context: ChannelHandlerContext) {
        if let onPush = self.onPush, Self.isPush(value) {
            onPush(value)
            return
        }
        guard let first = self.pending.first else {
            self.fail(context: context, RedisError(.protocolError, "reply without a pending request: \(value)"))
            return
        }
        switch first.target {
        case .single(let promise):
            self.pending.removeFirst()
            promise.succeed(value)
        case .batch(let promise):
            let index = self.pending.startIndex
            self.pending[index].replies.append(value)
            if self.pending[index].replies.count == first.expected {
                let replies = self.pending[index].replies
                self.pending.removeFirst()
                promise.succeed(replies)
            }
        case .none:
            self.pending.removeFirst()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RedisError(.connectionClosed, "connection to Redis closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let redisError = (error as? RedisError) ?? RedisError(.connectionClosed, "connection error: \(error)")
        self.logger.debug("redis connection error", metadata: ["redis.error": "\(redisError)"])
        self.fail(context: context, redisError)
    }

    // MARK: helpers

    private func checkTimeouts(context: ChannelHandlerContext) {
        // Replies come in order, so the oldest request is the first to time out.
        if let first = self.pending.first, first.deadline < context.eventLoop.now {
            self.fail(context: context, RedisError(.commandTimeout, "no reply from Redis in time; connection closed"))
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: RedisError) {
        self.failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if self.closedError == nil { self.closedError = error }
        while let entry = self.pending.popFirst() {
            switch entry.target {
            case .single(let promise): promise.fail(error)
            case .batch(let promise): promise.fail(error)
            case .none: break
            }
        }
    }

    private static let pushKinds: Set<String> = [
        "message", "pmessage", "smessage", "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe",
    ]

    static func isPush(_ value: RedisValue) -> Bool {
        guard case .array(let items) = value, let kind = items.first?.string else { return false }
        return pushKinds.contains(kind)
    }
}
