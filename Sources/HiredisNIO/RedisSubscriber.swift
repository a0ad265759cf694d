public import Foundation
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization

/// What a subscriber delivers.
public enum RedisSubscriberEvent: Sendable {
    /// A message published to a channel this subscriber follows.
    case message(channel: String, payload: ByteBuffer)
    /// A message on a channel that matched a pattern subscription.
    case patternMessage(pattern: String, channel: String, payload: ByteBuffer)
    /// The connection was lost and is back, with every channel and pattern
    /// subscribed again: messages published between `from` and `to` may have
    /// been missed, so resync whatever depends on them.
    case gap(from: Date, to: Date)
}

/// The one pub/sub connection of a process.
///
/// Subscriptions are remembered: when the connection drops, `run()`
/// reconnects with capped exponential backoff and jitter, subscribes every
/// channel and pattern again, and then emits `.gap`. A periodic PING detects
/// a dead peer.
public final class RedisSubscriber: Service {
    public let events: AsyncStream<RedisSubscriberEvent>
    private let continuation: AsyncStream<RedisSubscriberEvent>.Continuation
    private let configuration: RedisConfiguration
    private let backoff: Backoff
    private let pingInterval: Duration
    private let logger: Logger

    private struct State {
        var channels: Set<String> = []
        var patterns: Set<String> = []
        var connection: RedisConnection?
        var lastAlive: Date?
    }

    private let state = Mutex(State())

    public init(
        configuration: RedisConfiguration,
        backoff: Backoff = Backoff(),
        pingInterval: Duration = .seconds(5),
        logger: Logger
    ) {
        self.configuration = configuration
        self.backoff = backoff
        self.pingInterval = pingInterval
        self.logger = logger
        (self.events, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// `true` while connected with every wanted subscription in place.
    public var isConnected: Bool { self.state.withLock { $0.connection?.isActive ?? false } }

    /// Subscribes to channels. Returns once Redis confirmed the subscription,
    /// or at once while disconnected (the subscription is then made on
    /// reconnect and a `.gap` event follows).
    public func subscribe(_ channels: [String]) async throws {
        let connection = self.state.withLock { state in
            state.channels.formUnion(channels)
            return state.connection
        }
        try await self.sendAndConfirm(RedisCommand("SUBSCRIBE", channels.map { RedisArgument.string($0) }), on: connection)
    }

    public func unsubscribe(_ channels: [String]) async throws {
        let connection = self.state.withLock { state in
            state.channels.subtract(channels)
            return state.connection
        }
        try await self.sendAndConfirm(RedisCommand("UNSUBSCRIBE", channels.map { RedisArgument.string($0) }), on: connection)
    }

    public func psubscribe(_ patterns: [String]) async throws {
        let connection = self.state.withLock { state in
            state.patterns.formUnion(patterns)
            return state.connection
        }
        try await self.sendAndConfirm(RedisCommand("PSUBSCRIBE", patterns.map { RedisArgument.string($0) }), on: connection)
    }

    public func punsubscribe(_ patterns: [String]) async throws {
        let connection = self.state.withLock { state in
            state.patterns.subtract(patterns)
            return state.connection
        }
        try await self.sendAndConfirm(RedisCommand("PUNSUBSCRIBE", patterns.map { RedisArgument.string($0) }), on: connection)
    }

    /// The channels currently wanted (subscribed, or to be on reconnect).
    public var channels: Set<String> { self.state.withLock { $0.channels } }

    private func sendAndConfirm(_ command: RedisCommand, on connection: RedisConnection?) async throws {
        guard let connection, command.arguments.count > 1 else { return }
        connection.sendWithoutReply(command)
        // Redis answers in order: once the PING's pong is back, the
        // subscription above is in effect.
        do {
            _ = try await connection.send(RedisCommand("PING"))
        } catch let error as RedisError where error.code == .connectionClosed || error.code == .commandTimeout {
            // Lost meanwhile: run() subscribes again and reports a gap.
            return
        }
    }

    public func run() async throws {
        var attempt = 0
        var lostAt: Date? = nil
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let connection: RedisConnection
            var opened: RedisConnection?
            do {
                connection = try await RedisConnection.connect(
                    configuration: self.configuration,
                    logger: self.logger,
                    onPush: { [weak self] value in self?.handlePush(value) }
                )
                opened = connection
                let (channels, patterns) = self.state.withLock { state in
                    state.connection = connection
                    return (Array(state.channels), Array(state.patterns))
                }
                if !channels.isEmpty { connection.sendWithoutReply(RedisCommand("SUBSCRIBE", channels.map { RedisArgument.string($0) })) }
                if !patterns.isEmpty { connection.sendWithoutReply(RedisCommand("PSUBSCRIBE", patterns.map { RedisArgument.string($0) })) }
                _ = try await connection.send(RedisCommand("PING"))
                self.markAlive()
            } catch {
                // a half-set-up connection (say Redis answered -LOADING) must not stay subscribed
                if let opened { await opened.close() }
                self.state.withLock { $0.connection = nil }
                if lostAt == nil, self.channels.isEmpty == false { lostAt = Date() }
                let delay = self.backoff.delay(attempt: attempt)
                self.logger.warning(
                    "redis subscriber cannot connect; retrying",
                    metadata: ["redis.error": "\(error)", "retry.in": "\(delay)"]
                )
                attempt += 1
                try? await Task.sleep(for: delay)
                continue
            }
            if attempt > 0 || lostAt != nil {
                self.logger.info("redis subscriber reconnected", metadata: ["redis.attempts": "\(attempt)"])
            }
            attempt = 0
            if let from = lostAt {
                self.continuation.yield(.gap(from: from, to: Date()))
                lostAt = nil
            }
            await self.hold(connection)
            lostAt = self.state.withLock { state in
                state.connection = nil
                return state.lastAlive ?? Date()
            }
            if !Task.isCancelled && !Task.isShuttingDownGracefully {
                self.logger.warning("redis subscriber connection lost; reconnecting")
            }
        }
        self.continuation.finish()
    }

    /// Keeps the connection until it closes or the service shuts down, pinging it.
    private func hold(_ connection: RedisConnection) async {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    try? await connection.closeFuture.get()
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: self.pingInterval)
                        if Task.isCancelled { break }
                        // A missing pong closes the connection (command timeout).
                        if (try? await connection.send(RedisCommand("PING"))) != nil { self.markAlive() }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            connection.channel.close(promise: nil)
        }
        await withTaskCancellationHandler {
            await connection.close()
        } onCancel: {
            connection.channel.close(promise: nil)
        }
    }

    private func markAlive() {
        self.state.withLock { $0.lastAlive = Date() }
    }

    private func handlePush(_ value: RedisValue) {
        guard case .array(let items) = value, let kind = items.first?.string else { return }
        switch kind {
        case "message" where items.count == 3:
            guard let channel = items[1].string, let payload = items[2].buffer else { return }
            self.markAlive()
            self.continuation.yield(.message(channel: channel, payload: payload))
        case "pmessage" where items.count == 4:
            guard let pattern = items[1].string, let channel = items[2].string, let payload = items[3].buffer else { return }
            self.markAlive()
            self.continuation.yield(.patternMessage(pattern: pattern, channel: channel, payload: payload))
        default:
            break  // subscribe/unsubscribe confirmations: sendAndConfirm uses PING instead
        }
    }
}
