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

/// The pub/sub connections of a process: one to a single server, or one to
/// each master of a cluster.
///
/// Subscriptions are remembered: when a connection drops, `run()`
/// reconnects with capped exponential backoff and jitter, subscribes every
/// channel and pattern again, and then emits `.gap`. A periodic PING detects
/// a dead peer.
///
/// Shard channels (`ssubscribe`, Redis 7 sharded pub/sub) are followed on
/// the master that owns the channel's slot; classic channels and patterns
/// (heard from every node of a cluster) on the first master. When a slot
/// moves or a master fails over (Redis ends the shard subscription with
/// `sunsubscribe`, answers `MOVED`, or the connection drops), every
/// connection is opened again against a fresh slot map, and `.gap` follows.
public final class RedisSubscriber: Service {
    public let events: AsyncStream<RedisSubscriberEvent>
    private let continuation: AsyncStream<RedisSubscriberEvent>.Continuation
    private let configuration: RedisConfiguration
    private let backoff: Backoff
    private let pingInterval: Duration
    private let logger: Logger
    private let router: RedisClusterRouter?

    /// The connections in use: `main` carries classic channels and patterns
    /// (and, for a single server, shard channels too).
    private struct Links {
        var main: RedisConnection
        var masters: [RedisNodeAddress: RedisConnection] = [:]
        var topology: ClusterTopology?

        var all: [RedisConnection] { [self.main] + self.masters.values.filter { $0 !== self.main } }

        /// Shard channels grouped by slot (one SSUBSCRIBE may not span
        /// slots in a cluster), with the connection to the slot's master
        /// (nil: no master serves the slot now).
        func route(_ channels: some Sequence<String>) -> [(RedisConnection?, [String])] {
            guard let topology = self.topology else {
                let all = Array(channels)
                return all.isEmpty ? [] : [(self.main, all)]
            }
            var groups: [Int: [String]] = [:]
            for channel in channels { groups[ClusterSlot.of(channel), default: []].append(channel) }
            return groups.map { (slot, channels) in (topology.master(of: slot).flatMap { self.masters[$0] }, channels) }
        }
    }

    private struct State {
        var channels: Set<String> = []
        var shardChannels: Set<String> = []
        var patterns: Set<String> = []
        var links: Links?
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
        self.router = configuration.isCluster ? RedisClusterRouter(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger) : nil
        (self.events, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// Whether this subscriber follows a Redis Cluster (one connection per master).
    public var isCluster: Bool { self.router != nil }

    /// `true` while connected with every wanted subscription in place.
    public var isConnected: Bool { self.state.withLock { $0.links?.all.allSatisfy(\.isActive) ?? false } }

    /// Subscribes to channels. Returns once Redis confirmed the subscription,
    /// or at once while disconnected (the subscription is then made on
    /// reconnect and a `.gap` event follows).
    public func subscribe(_ channels: [String]) async throws {
        let links = self.state.withLock { state in
            state.channels.formUnion(channels)
            return state.links
        }
        try await self.sendAndConfirm(RedisCommand("SUBSCRIBE", channels.map { RedisArgument.string($0) }), on: links?.main, links: links)
    }

    public func unsubscribe(_ channels: [String]) async throws {
        let links = self.state.withLock { state in
            state.channels.subtract(channels)
            return state.links
        }
        try await self.sendAndConfirm(RedisCommand("UNSUBSCRIBE", channels.map { RedisArgument.string($0) }), on: links?.main, links: links)
    }

    /// Subscribes to shard channels (SSUBSCRIBE), each on the master of its slot.
    public func ssubscribe(_ channels: [String]) async throws {
        let links = self.state.withLock { state in
            state.shardChannels.formUnion(channels)
            return state.links
        }
        try await self.sendSharded("SSUBSCRIBE", channels, links: links)
    }

    public func sunsubscribe(_ channels: [String]) async throws {
        let links = self.state.withLock { state in
            state.shardChannels.subtract(channels)
            return state.links
        }
        try await self.sendSharded("SUNSUBSCRIBE", channels, links: links)
    }

    public func psubscribe(_ patterns: [String]) async throws {
        let links = self.state.withLock { state in
            state.patterns.formUnion(patterns)
            return state.links
        }
        try await self.sendAndConfirm(RedisCommand("PSUBSCRIBE", patterns.map { RedisArgument.string($0) }), on: links?.main, links: links)
    }

    public func punsubscribe(_ patterns: [String]) async throws {
        let links = self.state.withLock { state in
            state.patterns.subtract(patterns)
            return state.links
        }
        try await self.sendAndConfirm(RedisCommand("PUNSUBSCRIBE", patterns.map { RedisArgument.string($0) }), on: links?.main, links: links)
    }

    /// The channels currently wanted (subscribed, or to be on reconnect).
    public var channels: Set<String> { self.state.withLock { $0.channels } }
    /// The shard channels currently wanted.
    public var shardChannels: Set<String> { self.state.withLock { $0.shardChannels } }

    private func sendSharded(_ name: String, _ channels: [String], links: Links?) async throws {
        guard let links, !channels.isEmpty else { return }
        for (connection, group) in links.route(channels) {
            guard let connection else {
                // no master serves the slot right now: start over on a fresh map
                if name == "SSUBSCRIBE" { self.restart(links) }
                continue
            }
            try await self.sendAndConfirm(RedisCommand(name, group.map { RedisArgument.string($0) }), on: connection, links: links)
        }
    }

    private func sendAndConfirm(_ command: RedisCommand, on connection: RedisConnection?, links: Links?) async throws {
        guard let connection, command.arguments.count > 1 else { return }
        connection.sendWithoutReply(command)
        // Redis answers in order: once the PING's pong is back, the
        // subscription above is in effect.
        do {
            _ = try await connection.send(RedisCommand("PING"))
        } catch let error as RedisError where error.code == .connectionClosed || error.code == .commandTimeout {
            // Lost meanwhile: run() subscribes again and reports a gap.
            return
        } catch let error as RedisError where error.code == .serverError {
            // The subscription was refused (MOVED: the slot lives elsewhere now):
            // run() opens every connection again on a fresh map, and reports a gap.
            if let links { self.restart(links) }
            return
        }
    }

    /// Ends the current connections; `run()` opens new ones.
    private func restart(_ links: Links) {
        for connection in links.all { connection.channel.close(promise: nil) }
    }

    /// Opens the connections (a fresh slot map for a cluster) and subscribes
    /// everything wanted on them.
    private func open() async throws -> Links {
        var opened: [RedisConnection] = []
        do {
            let links: Links
            if let router = self.router {
                let topology = try await router.refresh()
                var masters: [RedisNodeAddress: RedisConnection] = [:]
                for master in topology.masters {
                    let connection = try await RedisConnection.connect(configuration: self.configuration.node(master), logger: self.logger, onPush: { [weak self] value in self?.handlePush(value) })
                    opened.append(connection)
                    masters[master] = connection
                }
                guard let first = topology.masters.first, let main = masters[first] else { throw RedisError(.serverError, "CLUSTERDOWN no master") }
                links = Links(main: main, masters: masters, topology: topology)
            } else {
                let connection = try await RedisConnection.connect(configuration: self.configuration, logger: self.logger, onPush: { [weak self] value in self?.handlePush(value) })
                opened.append(connection)
                links = Links(main: connection)
            }
            let (channels, shardChannels, patterns) = self.state.withLock { state in
                state.links = links
                return (Array(state.channels), Array(state.shardChannels), Array(state.patterns))
            }
            if !channels.isEmpty { links.main.sendWithoutReply(RedisCommand("SUBSCRIBE", channels.map { RedisArgument.string($0) })) }
            if !patterns.isEmpty { links.main.sendWithoutReply(RedisCommand("PSUBSCRIBE", patterns.map { RedisArgument.string($0) })) }
            for (connection, group) in links.route(shardChannels) {
                guard let connection else { throw RedisError(.serverError, "CLUSTERDOWN a shard channel's slot has no master") }
                connection.sendWithoutReply(RedisCommand("SSUBSCRIBE", group.map { RedisArgument.string($0) }))
            }
            for connection in links.all { _ = try await connection.send(RedisCommand("PING")) }
            return links
        } catch {
            // a half-set-up connection (say Redis answered -LOADING) must not stay subscribed
            for connection in opened { await connection.close() }
            self.state.withLock { $0.links = nil }
            throw error
        }
    }

    public func run() async throws {
        var attempt = 0
        var lostAt: Date? = nil
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let links: Links
            do {
                links = try await self.open()
                self.markAlive()
            } catch {
                let wanted = self.state.withLock { !$0.channels.isEmpty || !$0.shardChannels.isEmpty }
                if lostAt == nil, wanted { lostAt = Date() }
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
            await self.hold(links)
            lostAt = self.state.withLock { state in
                state.links = nil
                return state.lastAlive ?? Date()
            }
            if !Task.isCancelled && !Task.isShuttingDownGracefully {
                self.logger.warning("redis subscriber connection lost; reconnecting")
            }
        }
        await self.router?.shutdown()
        self.continuation.finish()
    }

    /// Keeps the connections until one closes or the service shuts down, pinging them.
    private func hold(_ links: Links) async {
        let connections = links.all
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for connection in connections {
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
                }
                await group.next()
                // one connection down ends them all (their close futures end the group)
                for connection in connections { connection.channel.close(promise: nil) }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            for connection in connections { connection.channel.close(promise: nil) }
        }
        await withTaskCancellationHandler {
            for connection in connections { await connection.close() }
        } onCancel: {
            for connection in connections { connection.channel.close(promise: nil) }
        }
    }

    private func markAlive() {
        self.state.withLock { $0.lastAlive = Date() }
    }

    private func handlePush(_ value: RedisValue) {
        guard case .array(let items) = value, let kind = items.first?.string else { return }
        switch kind {
        case "message" where items.count == 3, "smessage" where items.count == 3:
            guard let channel = items[1].string, let payload = items[2].buffer else { return }
            self.markAlive()
            self.continuation.yield(.message(channel: channel, payload: payload))
        case "pmessage" where items.count == 4:
            guard let pattern = items[1].string, let channel = items[2].string, let payload = items[3].buffer else { return }
            self.markAlive()
            self.continuation.yield(.patternMessage(pattern: pattern, channel: channel, payload: payload))
        case "sunsubscribe" where items.count == 3:
            // Redis ends a shard subscription by itself when the slot moves:
            // one still wanted means the map changed.
            guard let channel = items[1].string else { return }
            let links = self.state.withLock { state in state.shardChannels.contains(channel) ? state.links : nil }
            if let links { self.restart(links) }
        default:
            break  // subscribe/unsubscribe confirmations: sendAndConfirm uses PING instead
        }
    }
}
