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

    /// The master that serves a route now.
    private func node(for route: RedisCommand.Route, refreshed: Bool = false) async throws -> RedisNodeAddress {
        let topology = try await self.topology()
        switch route {
        case .anyNode:
            if let node = topology.masters.randomElement() { return node }
        case .slot(let slot):
            if let node = topology.master(of: slot) { return node }
        }
        guard !refreshed else { throw RedisError(.serverError, "CLUSTERDOWN no master serves this slot") }
        try await self.refresh()
        return try await self.node(for: route, refreshed: true)
    }

    func nodeConfiguration(forKey key: String?) async throws -> RedisConfiguration {
        let node = try await self.node(for: key.map { .slot(ClusterSlot.of($0)) } ?? .anyNode)
        return self.configuration.node(node)
    }

    func connection(forKey key: String?) async throws -> RedisConnection {
        let node = try await self.node(for: key.map { .slot(ClusterSlot.of($0)) } ?? .anyNode)
        return try await self.pool(node).connection()
    }

    // MARK: commands

    /// Whether a reply or error means "the cluster is changing, ask again
    /// soon" rather than an answer: the command was not carried out.
    static func isTransient(_ reply: RedisValue) -> Bool {
        guard case .error(let message) = reply else { return false }
        return message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN") || message.hasPrefix("MASTERDOWN") || message.hasPrefix("LOADING")
    }

    static func isNotSent(_ error: any Error) -> Bool {
        guard let error = error as? RedisError else { return false }
        return error.code == .connectionRefused || error.code == .connectTimeout
    }

    /// Runs one command on the master of its slot, following redirections;
    /// returns the reply, error replies included (as `.error`).
    func execute(_ command: RedisCommand, extraTimeout: TimeAmount = .zero) async throws -> RedisValue {
        let route = try command.route()
        let deadline = ContinuousClock.now + .nanoseconds(self.configuration.commandTimeout.nanoseconds + extraTimeout.nanoseconds)
        var attempt = 0
        var target: RedisNodeAddress
        do {
            target = try await self.node(for: route)
        } catch where Self.isWorthWaiting(error) {
            target = try await self.awaitNewMap(attempt: &attempt, route: route, deadline: deadline, error: error)
        }
        var asking = false
        // only redirections count toward the limit; waiting for a failover is bounded by the deadline
        var redirects = 0
        while redirects <= Self.maxRedirects {
            let reply: RedisValue
            do {
                let connection = try await self.pool(target).connection()
                if asking {
                    reply = try await connection.pipeline([RedisCommand("ASKING"), command])[1]
                } else {
                    reply = try await connection.send(command, extraTimeout: extraTimeout)
                }
            } catch where Self.isNotSent(error) && ContinuousClock.now < deadline {
                // The master went away (failing over): wait for the map to change.
                target = try await self.awaitNewMap(attempt: &attempt, route: route, deadline: deadline, error: error)
                asking = false
                continue
            }
            if let redirect = ClusterRedirect(reply) {
                redirects += 1
                // an unknown endpoint comes as ":port": the same host
                target = redirect.node.host.isEmpty ? RedisNodeAddress(host: target.host, port: redirect.node.port) : redirect.node
                asking = redirect.kind == .ask
                if redirect.kind == .moved { Task { try? await self.refresh() } }
                continue
            }
            if Self.isTransient(reply), ContinuousClock.now < deadline {
                target = try await self.awaitNewMap(attempt: &attempt, route: route, deadline: deadline, error: RedisError(.serverError, reply.description))
                asking = false
                continue
            }
            return reply
        }
        throw RedisError(.serverError, "\(command.name): more than \(Self.maxRedirects) cluster redirections")
    }

    /// Waits for the cluster to name a master for `route` again (a failover
    /// under way: the old master refuses connections, or no master serves
    /// the slot yet), reading the map with backoff until `deadline`.
    private func awaitNewMap(attempt: inout Int, route: RedisCommand.Route, deadline: ContinuousClock.Instant, error: any Error) async throws -> RedisNodeAddress {
        var lastError = error
        while true {
            let delay = Backoff(base: .milliseconds(50), cap: .milliseconds(500)).delay(attempt: attempt)
            attempt += 1
            guard ContinuousClock.now + delay < deadline else { throw lastError }
            try await Task.sleep(for: delay)
            do {
                try await self.refresh()
                return try await self.node(for: route)
            } catch where Self.isWorthWaiting(error) {
                lastError = error
            }
        }
    }

    /// A failure that a failover in progress explains: nothing was carried
    /// out, and the cluster may answer once a replica has taken over.
    static func isWorthWaiting(_ error: any Error) -> Bool {
        guard let error = error as? RedisError else { return false }
        if Self.isNotSent(error) { return true }
        return error.code == .serverError && Self.isTransient(.error(error.message))
    }

    /// Splits a pipeline per master, runs the parts at once, and puts the
    /// replies back in order. Commands redirected, refused for a changing
    /// cluster, whose node could not be reached, or whose slot has no master
    /// right now run again one by one (at once, each waiting for the
    /// failover on its own); a part that failed in flight fails the call.
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        guard !commands.isEmpty else { return [] }
        let routes = try commands.map { command throws(RedisError) in try command.route() }
        var groups: [RedisNodeAddress: [Int]] = [:]
        for (index, route) in routes.enumerated() {
            // no master for the slot (failing over): left for the retries below
            if let node = try? await self.node(for: route) { groups[node, default: []].append(index) }
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
