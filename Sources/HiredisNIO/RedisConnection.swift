public import Logging
public import NIOCore
import NIOPosix

/// Anything that runs a command: a single connection or the pooled client.
public protocol RedisCommandExecutor: Sendable {
    /// Runs one command. An error reply throws `RedisError` with code `.serverError`.
    func send(_ command: RedisCommand) async throws -> RedisValue
    /// Writes all commands at once and returns their replies in order;
    /// error replies are returned as `.error` values, not thrown.
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue]
}

extension RedisCommandExecutor {
    public func send(_ name: String, _ arguments: RedisArgument...) async throws -> RedisValue {
        try await self.send(RedisCommand(name, arguments))
    }
}

/// One TCP connection to Redis, pipelined: any number of tasks may send on it at once.
public final class RedisConnection: RedisCommandExecutor {
    public let channel: any Channel
    private let commandTimeout: TimeAmount

    init(channel: any Channel, commandTimeout: TimeAmount) {
        self.channel = channel
        self.commandTimeout = commandTimeout
    }

    /// Connects, then runs AUTH and SELECT as the configuration asks.
    /// `onPush` receives pub/sub pushes (for subscriber connections).
    public static func connect(
        configuration: RedisConfiguration,
        eventLoop: (any EventLoop)? = nil,
        logger: Logger,
        onPush: (@Sendable (RedisValue) -> Void)? = nil
    ) async throws -> RedisConnection {
        let checkInterval = TimeAmount.nanoseconds(max(configuration.commandTimeout.nanoseconds / 4, 10_000_000))
        let bootstrap = ClientBootstrap(group: eventLoop ?? MultiThreadedEventLoopGroup.singleton.any())
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RedisChannelHandler(onPush: onPush, timeoutCheckInterval: checkInterval, logger: logger)
                    )
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw Self.mapConnectError(error, configuration: configuration)
        }
        let connection = RedisConnection(channel: channel, commandTimeout: configuration.commandTimeout)
        do {
            if let password = configuration.password {
                var args: [RedisArgument] = []
                if let user = configuration.username { args.append(.string(user)) }
                args.append(.string(password))
                _ = try await connection.send(RedisCommand("AUTH", args))
            }
            if configuration.database != 0 {
                _ = try await connection.send(RedisCommand("SELECT", [RedisArgument(configuration.database)]))
            }
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    static func mapConnectError(_ error: any Error, configuration: RedisConfiguration) -> RedisError {
        let address = "\(configuration.host):\(configuration.port)"
        if let error = error as? ChannelError, case .connectTimeout = error {
            return RedisError(.connectTimeout, "connecting to \(address) timed out")
        }
        return RedisError(.connectionRefused, "cannot connect to \(address): \(error)")
    }

    public var isActive: Bool { self.channel.isActive }

    /// Completes when the connection has closed.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }

    public func send(_ command: RedisCommand) async throws -> RedisValue {
        let value = try await self.send(command, extraTimeout: .zero)
        if case .error(let message) = value { throw RedisError(.serverError, message) }
        return value
    }

    /// `extraTimeout` extends the command timeout, for blocking commands (XREADGROUP BLOCK).
    public func send(_ command: RedisCommand, extraTimeout: TimeAmount) async throws -> RedisValue {
        let promise = self.channel.eventLoop.makePromise(of: RedisValue.self)
        self.write(RedisOutboundBatch(commands: .one(command), target: .single(promise), deadline: self.channel.eventLoop.now + self.commandTimeout + extraTimeout))
        return try await promise.futureResult.get()
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let promise = self.channel.eventLoop.makePromise(of: [RedisValue].self)
        self.write(RedisOutboundBatch(commands: .many(commands), target: .batch(promise), deadline: self.channel.eventLoop.now + self.commandTimeout))
        return try await promise.futureResult.get()
    }

    /// Writes a command whose replies arrive as pushes (SUBSCRIBE, UNSUBSCRIBE, …).
    func sendWithoutReply(_ command: RedisCommand) {
        self.write(RedisOutboundBatch(commands: .one(command), target: .none, deadline: self.channel.eventLoop.now))
    }

    /// Writes a batch; if the write itself fails (the channel closed before the
    /// handler saw it), every command of the batch fails instead of hanging.
    private func write(_ batch: RedisOutboundBatch) {
        let writePromise = self.channel.eventLoop.makePromise(of: Void.self)
        writePromise.futureResult.whenFailure { error in
            batch.fail((error as? RedisError) ?? RedisError(.connectionClosed, "connection to Redis closed"))
        }
        self.channel.writeAndFlush(batch, promise: writePromise)
    }

    public func close() async {
        try? await self.channel.close()
    }
}
