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

        /// Shard channels grouped by slot, with the connection to the slot's
        /// master (nil: no master serves the slot now).
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
    public func subscribe(_ channels: [String]) async throws { await self.change(.channels, channels, adding: true) }
    public func unsubscribe(_ channels: [String]) async throws { await self.change(.channels, channels, adding: false) }
    /// Subscribes to shard channels (SSUBSCRIBE), each on the master of its slot.
    public func ssubscribe(_ channels: [String]) async throws { await self.change(.shardChannels, channels, adding: true) }
    public func sunsubscribe(_ channels: [String]) async throws { await self.change(.shardChannels, channels, adding: false) }
    public func psubscribe(_ patterns: [String]) async throws { await self.change(.patterns, patterns, adding: true) }
    public func punsubscribe(_ patterns: [String]) async throws { await self.change(.patterns, patterns, adding: false) }

    /// The channels currently wanted (subscribed, or to be on reconnect).
    public var channels: Set<String> { self.state.withLock { $0.channels } }
    /// The shard channels currently wanted.
    public var shardChannels: Set<String> { self.state.withLock { $0.shardChannels } }

    private enum Kind {
        case channels, shardChannels, patterns

        var wanted: WritableKeyPath<State, Set<String>> {
            switch self {
            case .channels: \.channels
            case .shardChannels: \.shardChannels
            case .patterns: \.patterns
            }
        }

        func command(adding: Bool) -> String {
            switch self {
            case .channels: adding ? "SUBSCRIBE" : "UNSUBSCRIBE"
            case .shardChannels: adding ? "SSUBSCRIBE" : "SUNSUBSCRIBE"
            case .patterns: adding ? "PSUBSCRIBE" : "PUNSUBSCRIBE"
            }
        }
    }

    /// Records what is wanted, and, while connected, tells Redis and waits
    /// for its confirmation.
    private func change(_ kind: Kind, _ names: [String], adding: Bool) async {
        let links = self.state.withLock { state in
            if adding { state[keyPath: kind.wanted].formUnion(names) } else { state[keyPath: kind.wanted].subtract(names) }
            return state.links
        }
        guard let links, !names.isEmpty else { return }
        let written: [RedisConnection]
        do {
            written = try Self.write(kind, names, adding: adding, on: links)
        } catch {
            // no master serves a channel's slot right now: start over on a fresh map
            self.restart(links)
            return
        }
        // Redis answers in order: once the PING's pong is back, what was written is in effect.
        for connection in written {
            do {
                _ = try await connection.send(RedisCommand("PING"))
            } catch let error as RedisError where error.code == .serverError {
                // refused (MOVED: the slot lives elsewhere now): run() opens every
                // connection again on a fresh map, and reports a gap
                self.restart(links)
            } catch {
                // lost meanwhile: run() subscribes again and reports a gap
            }
        }
    }

    /// Writes the commands for `names`: classic channels and patterns on the
    /// main connection, shard channels one command per slot on its master
    /// (one SSUBSCRIBE may not span slots in a cluster). Returns the
    /// connections written to; throws when a slot to subscribe to has no
    /// master now (one to leave is skipped: nothing is subscribed there).
    private static func write(_ kind: Kind, _ names: [String], adding: Bool, on links: Links) throws(RedisError) -> [RedisConnection] {
        let name = kind.command(adding: adding)
        guard case .shardChannels = kind else {
            links.main.sendWithoutReply(RedisCommand(name, names.map { RedisArgument.string($0) }))
            return [links.main]
        }
        var written: [ObjectIdentifier: RedisConnection] = [:]
        for (connection, group) in links.route(names) {
            guard let connection else {
                // a slot without a master holds no subscription to end; one to make needs a fresh map
                if adding { throw RedisError(.serverError, "CLUSTERDOWN a shard channel's slot has no master") } else { continue }
            }
            connection.sendWithoutReply(RedisCommand(name, group.map { RedisArgument.string($0) }))
            written[ObjectIdentifier(connection)] = connection
        }
        return Array(written.values)
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
            let wanted = self.state.withLock { state in
                state.links = links
                return [(Kind.channels, state.channels), (.shardChannels, state.shardChannels), (.patterns, state.patterns)]
            }
            for (kind, names) in wanted where !names.isEmpty { _ = try Self.write(kind, Array(names), adding: true, on: links) }
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
            break  // subscribe/unsubscribe confirmations: `change` uses PING instead
        }
    }
}
