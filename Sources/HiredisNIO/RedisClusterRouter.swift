import Logging
import NIOCore
import Synchronization

/// The cluster side of `RedisClient`: the slot map, a pool per node, and the
/// redirections and retries that keep commands on the right master.
final class RedisClusterRouter: Sendable {
    let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    /// Redirections one command may follow before it fails.
    static let maxRedirects = 16

    private struct State {
        var topology: ClusterTopology?
        var pools: [RedisNodeAddress: RedisNodePool] = [:]
        var refresh: Task<ClusterTopology, any Error>?
        var isShutdown = false
    }

    private let state = Mutex(State())

    init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    private func pool(_ node: RedisNodeAddress) throws(RedisError) -> RedisNodePool {
        let pool: RedisNodePool? = self.state.withLock { state in
            if state.isShutdown { return nil }
            if let pool = state.pools[node] { return pool }
            let pool = RedisNodePool(configuration: self.configuration.node(node), eventLoopGroup: self.eventLoopGroup, logger: self.logger)
            state.pools[node] = pool
            return pool
        }
        guard let pool else { throw RedisError(.shutdown, "the Redis client has been shut down") }
        return pool
    }

    // MARK: the slot map

    /// The slot map, read now if it never was.
    func topology() async throws -> ClusterTopology {
        if let topology = self.state.withLock({ $0.topology }) { return topology }
        return try await self.refresh()
    }

    /// Reads the slot map again (one read at a time: callers that ask while
    /// one is under way share its answer).
    @discardableResult
    func refresh() async throws -> ClusterTopology {
        let task = self.state.withLock { state -> Task<ClusterTopology, any Error> in
            if let running = state.refresh { return running }
            let task = Task { try await self.load() }
            state.refresh = task
            return task
        }
        defer { self.state.withLock { state in if state.refresh == task { state.refresh = nil } } }
        return try await task.value
    }

    /// Asks the known nodes, then the seeds, for `CLUSTER SHARDS`; keeps the
    /// first answer that names a master.
    private func load() async throws -> ClusterTopology {
        let known = self.state.withLock { $0.topology?.nodes ?? [] }
        var candidates: [RedisNodeAddress] = []
        for node in known + self.configuration.clusterSeeds where !candidates.contains(node) { candidates.append(node) }
        var lastError: any Error = RedisError(.connectionRefused, "no Redis Cluster node given")
        for node in candidates {
            do {
                let reply = try await self.pool(node).connection().send(RedisCommand("CLUSTER", ["SHARDS"]))
                let topology = try ClusterTopology.parse(shards: reply)
                guard !topology.shards.isEmpty else {
                    lastError = RedisError(.serverError, "CLUSTERDOWN \(node) knows no master")
                    continue
                }
                let previous = self.state.withLock { state in
                    defer { state.topology = topology }
                    return state.topology
                }
                if previous != topology {
                    self.logger.info("redis cluster map read", metadata: ["redis.masters": "\(topology.masters.map(\.description).joined(separator: ","))"])
                }
                return topology
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// The master that serves `route` on `topology` (nil: none serves the slot now).
    private static func master(for route: RedisCommand.Route, in topology: ClusterTopology) -> RedisNodeAddress? {
        switch route {
        case .anyNode: topology.masters.randomElement()
        case .slot(let slot): topology.master(of: slot)
        }
    }

    /// The master that serves `route`, waiting (until `deadline`) while none
    /// does: a failover under way.
    private func master(for route: RedisCommand.Route, attempt: inout Int, deadline: ContinuousClock.Instant) async throws -> RedisNodeAddress {
        var topology = try await self.topology()
        while true {
            if let node = Self.master(for: route, in: topology) { return node }
            topology = try await self.pause(&attempt, until: deadline, failing: RedisError(.serverError, "CLUSTERDOWN no master serves the slot"))
        }
    }

    /// The master of `key`'s slot (some master without a key), as a command would find it.
    private func master(forKey key: String?) async throws -> RedisNodeAddress {
        var attempt = 0
        let route: RedisCommand.Route = key.map { .slot(ClusterSlot.of($0)) } ?? .anyNode
        return try await self.master(for: route, attempt: &attempt, deadline: .now + .nanoseconds(self.configuration.commandTimeout.nanoseconds))
    }

    /// Settings for a connection of its own to the master of `key`'s slot;
    /// `fresh` reads the map first (a reconnect after a failover or a moved slot).
    func nodeConfiguration(forKey key: String?, fresh: Bool) async throws -> RedisConfiguration {
        if fresh { try await self.refresh() }
        return self.configuration.node(try await self.master(forKey: key))
    }

    func connection(forKey key: String?) async throws -> RedisConnection {
        try await self.pool(try await self.master(forKey: key)).connection()
    }

    /// Waits a little (backoff) and reads the map again, while the cluster is
    /// changing. Throws `error` when the wait would pass `deadline`, and the
    /// map read's own error when no node answers at all: a cluster that is
    /// down fails at once, as a single Redis does.
    private func pause(_ attempt: inout Int, until deadline: ContinuousClock.Instant, failing error: any Error) async throws -> ClusterTopology {
        let delay = Backoff(base: .milliseconds(50), cap: .milliseconds(500)).delay(attempt: attempt)
        attempt += 1
        guard ContinuousClock.now + delay < deadline else { throw error }
        try await Task.sleep(for: delay)
        return try await self.refresh()
    }

    // MARK: commands

    /// Whether a reply means "the cluster is changing, ask again soon"
    /// rather than an answer: the command was not carried out.
    static func isTransient(_ reply: RedisValue) -> Bool {
        guard case .error(let message) = reply else { return false }
        return message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN") || message.hasPrefix("MASTERDOWN") || message.hasPrefix("LOADING")
    }

    /// The command never reached the node (it is down, or failing over): safe to send elsewhere.
    static func isNotSent(_ error: any Error) -> Bool {
        guard let error = error as? RedisError else { return false }
        return error.code == .connectionRefused || error.code == .connectTimeout
    }

    /// Runs one command on the master of its slot, following redirections
    /// (at most `maxRedirects`) and waiting out a failover until the command
    /// timeout; returns the reply, error replies included (as `.error`).
    func execute(_ command: RedisCommand, extraTimeout: TimeAmount = .zero) async throws -> RedisValue {
        let route = try command.route()
        let deadline = ContinuousClock.now + .nanoseconds(self.configuration.commandTimeout.nanoseconds + extraTimeout.nanoseconds)
        var attempt = 0
        var redirects = 0
        var target = try await self.master(for: route, attempt: &attempt, deadline: deadline)
        var asking = false
        while true {
            let reply: RedisValue
            do {
                let connection = try await self.pool(target).connection()
                if asking {
                    reply = try await connection.pipeline([RedisCommand("ASKING"), command])[1]
                } else {
                    reply = try await connection.send(command, extraTimeout: extraTimeout)
                }
            } catch where Self.isNotSent(error) {
                // the master went away (failing over): wait for a map that names another
                _ = try await self.pause(&attempt, until: deadline, failing: error)
                target = try await self.master(for: route, attempt: &attempt, deadline: deadline)
                asking = false
                continue
            }
            if let redirect = ClusterRedirect(reply) {
                redirects += 1
                guard redirects <= Self.maxRedirects else {
                    throw RedisError(.serverError, "\(command.name): more than \(Self.maxRedirects) cluster redirections")
                }
                // an unknown endpoint comes as ":port": the same host
                target = redirect.node.host.isEmpty ? RedisNodeAddress(host: target.host, port: redirect.node.port) : redirect.node
                asking = redirect.kind == .ask
                if redirect.kind == .moved { Task { try? await self.refresh() } }
                continue
            }
            if Self.isTransient(reply) {
                do {
                    _ = try await self.pause(&attempt, until: deadline, failing: RedisError(.serverError, "\(reply)"))
                } catch {
                    return reply  // past the deadline, or no node answers: the reply is the answer
                }
                target = try await self.master(for: route, attempt: &attempt, deadline: deadline)
                asking = false
                continue
            }
            return reply
        }
    }

    /// Splits a pipeline per master, runs the parts at once, and puts the
    /// replies back in order; commands without a key go, in their order, to
    /// one master. Commands redirected, refused for a changing cluster,
    /// whose node could not be reached, or whose slot has no master right
    /// now run again one by one (at once, each waiting for the failover on
    /// its own); a part that failed in flight fails the call.
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let routes = try commands.map { command throws(RedisError) in try command.route() }
        let topology = try await self.topology()
        let keyless = topology.masters.randomElement()
        var groups: [RedisNodeAddress: [Int]] = [:]
        for (index, route) in routes.enumerated() {
            let node = route == .anyNode ? keyless : Self.master(for: route, in: topology)
            // no master for the slot (failing over): left for the retries below
            if let node { groups[node, default: []].append(index) }
        }
        var replies = [RedisValue?](repeating: nil, count: commands.count)
        try await withThrowingTaskGroup(of: ([Int], [RedisValue]?).self) { group in
            for (node, indices) in groups {
                group.addTask {
                    do {
                        return (indices, try await self.pool(node).connection().pipeline(indices.map { commands[$0] }))
                    } catch where Self.isNotSent(error) {
                        return (indices, nil)
                    }
                }
            }
            for try await (indices, values) in group {
                guard let values else { continue }
                for (index, value) in zip(indices, values) { replies[index] = value }
            }
        }
        let again = commands.indices.filter { index in
            guard let reply = replies[index] else { return true }
            return ClusterRedirect(reply) != nil || Self.isTransient(reply)
        }
        try await withThrowingTaskGroup(of: (Int, RedisValue).self) { group in
            for index in again { group.addTask { (index, try await self.execute(commands[index])) } }
            for try await (index, reply) in group { replies[index] = reply }
        }
        return replies.map { $0 ?? .null }
    }

    func shutdown() async {
        let pools = self.state.withLock { state in
            state.isShutdown = true
            defer { state.pools = [:] }
            return Array(state.pools.values)
        }
        for pool in pools { await pool.shutdown() }
    }
}
