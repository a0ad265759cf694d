public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The command client: a bounded pool of pipelined connections per server,
/// used round-robin.
///
/// Connections are opened lazily and replaced when they close. While Redis is
/// down, every command fails fast with `connectionRefused` (or `connectTimeout`
/// for an unreachable host) and succeeds again once Redis is back. Blocking
/// commands (`XREADGROUP … BLOCK`) belong on a dedicated connection:
/// `withDedicatedConnection`.
///
/// Given a cluster (`redis+cluster://`), the client reads the slot map with
/// `CLUSTER SHARDS` and sends each command to the master that owns its key's
/// slot, through a pool per node: `MOVED` reads the map again and retries
/// there, `ASK` retries once after `ASKING`, a pipeline is split per node
/// and its replies put back in order, and a command whose keys span slots is
/// refused (`crossSlot`) before it is sent. While a master fails over
/// (refused connections, `CLUSTERDOWN`, `TRYAGAIN`), a command that was not
/// sent is retried against the new map until its timeout; when no node
/// answers at all, commands fail at once.
public final class RedisClient: RedisCommandExecutor, Service {
    public let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let backend: Backend

    private enum Backend {
        case single(RedisNodePool)
        case cluster(RedisClusterRouter)
    }

    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.backend = configuration.isCluster
            ? .cluster(RedisClusterRouter(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger))
            : .single(RedisNodePool(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger))
    }

    /// A live pooled connection (opening one if needed); in a cluster, to the
    /// master of `key`'s slot, or to some master without a key.
    public func connection(forKey key: String? = nil) async throws -> RedisConnection {
        switch self.backend {
        case .single(let pool): try await pool.connection()
        case .cluster(let router): try await router.connection(forKey: key)
        }
    }

    public func send(_ command: RedisCommand) async throws -> RedisValue {
        switch self.backend {
        case .single(let pool):
            return try await pool.connection().send(command)
        case .cluster(let router):
            let value = try await router.execute(command)
            if case .error(let message) = value { throw RedisError(.serverError, message) }
            return value
        }
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        switch self.backend {
        case .single(let pool): try await pool.connection().pipeline(commands)
        case .cluster(let router): try await router.pipeline(commands)
        }
    }

    /// Runs `body` on a connection of its own (not pooled), closed afterwards;
    /// in a cluster, to the master of `key`'s slot on a freshly read map (a
    /// dedicated connection is opened again after a failover or a moved slot).
    public func withDedicatedConnection<T: Sendable>(forKey key: String? = nil, _ body: (RedisConnection) async throws -> T) async throws -> T {
        var configuration = self.configuration
        if case .cluster(let router) = self.backend { configuration = try await router.nodeConfiguration(forKey: key, fresh: true) }
        let connection = try await RedisConnection.connect(
            configuration: configuration,
            eventLoop: self.eventLoopGroup.any(),
            logger: self.logger
        )
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    /// Waits for graceful shutdown, then closes every connection.
    public func run() async throws {
        try? await gracefulShutdown()
        await self.shutdown()
    }

    public func shutdown() async {
        switch self.backend {
        case .single(let pool): await pool.shutdown()
        case .cluster(let router): await router.shutdown()
        }
    }
}

/// The pooled connections to one server.
final class RedisNodePool: Sendable {
    let configuration: RedisConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger

    private enum Slot {
        case empty
        case connecting(EventLoopFuture<RedisConnection>)
        case ready(RedisConnection)
    }

    private struct State {
        var slots: [Slot]
        var next = 0
        var isShutdown = false
    }

    private let state: Mutex<State>

    init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.state = Mutex(State(slots: Array(repeating: .empty, count: max(1, configuration.poolSize))))
    }

    private enum Lease {
        case use(RedisConnection)
        case wait(EventLoopFuture<RedisConnection>)
        case connect(index: Int, promise: EventLoopPromise<RedisConnection>)
        case shutdown
    }

    /// A live pooled connection (opening one if needed).
    func connection() async throws -> RedisConnection {
        let loop = self.eventLoopGroup.any()
        let lease: Lease = self.state.withLock { state in
            if state.isShutdown { return .shutdown }
            let index = state.next
            state.next = (index + 1) % state.slots.count
            switch state.slots[index] {
            case .ready(let connection) where connection.isActive:
                return .use(connection)
            case .connecting(let future):
                return .wait(future)
            case .ready, .empty:
                let promise = loop.makePromise(of: RedisConnection.self)
                state.slots[index] = .connecting(promise.futureResult)
                return .connect(index: index, promise: promise)
            }
        }
        switch lease {
        case .use(let connection):
            return connection
        case .wait(let future):
            return try await future.get()
        case .shutdown:
            throw RedisError(.shutdown, "the Redis client has been shut down")
        case .connect(let index, let promise):
            do {
                let connection = try await RedisConnection.connect(configuration: self.configuration, eventLoop: loop, logger: self.logger)
                let keep = self.state.withLock { state in
                    guard !state.isShutdown else { return false }
                    state.slots[index] = .ready(connection)
                    return true
                }
                promise.succeed(connection)
                if !keep {
                    await connection.close()
                    throw RedisError(.shutdown, "the Redis client has been shut down")
                }
                return connection
            } catch {
                self.state.withLock { $0.slots[index] = .empty }
                promise.fail(error)
                throw error
            }
        }
    }

    func shutdown() async {
        let slots = self.state.withLock { state in
            state.isShutdown = true
            defer { state.slots = state.slots.map { _ in .empty } }
            return state.slots
        }
        for slot in slots {
            if case .ready(let connection) = slot { await connection.close() }
        }
    }
}
