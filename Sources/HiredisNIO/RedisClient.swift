public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Synchronization

/// The command client: a bounded pool of pipelined connections, used round-robin.
///
/// Connections are opened lazily and replaced when they close. While Redis is
/// down, every command fails fast with `connectionRefused` (or `connectTimeout`
/// for an unreachable host) and succeeds again once Redis is back. Blocking
/// commands (`XREADGROUP … BLOCK`) belong on a dedicated connection:
/// `withDedicatedConnection`.
public final class RedisClient: RedisCommandExecutor, Service {
    public let configuration: RedisConfiguration
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

    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
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
    public func connection() async throws -> RedisConnection {
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

    public func send(_ command: RedisCommand) async throws -> RedisValue {
        try await self.connection().send(command)
    }

    public func pipeline(_ commands: [RedisCommand]) async throws -> [RedisValue] {
        try await self.connection().pipeline(commands)
    }

    /// Runs `body` on a connection of its own (not pooled), closed afterwards.
    public func withDedicatedConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await RedisConnection.connect(
            configuration: self.configuration,
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
