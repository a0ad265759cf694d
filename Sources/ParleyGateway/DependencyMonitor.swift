import Foundation
import HiredisNIO
import Logging
import Metrics
import ParleyCore
import PostgresNIO
import ServiceLifecycle

/// Probes PostgreSQL and Redis once per `interval` while the gateway runs:
/// the PostgreSQL probe closes the circuit breaker as soon as the server
/// answers again (requests never serve as probes), and each dependency's
/// state is on `/metrics` as `parley_dependency_up{dependency}`.
struct DependencyMonitor: Service {
    let database: Database
    let redis: RedisClient
    let interval: Duration
    let logger: Logger
    private let redisUp = Gauge(label: "parley_dependency_up", dimensions: [("dependency", "redis")])

    init(database: Database, redis: RedisClient, interval: Duration = .seconds(1), logger: Logger) {
        self.database = database
        self.redis = redis
        self.interval = interval
        self.logger = logger
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var redisWasUp = true
            while !Task.isCancelled {
                _ = await self.database.health.probe(self.database.client, timeout: self.database.deadline, logger: self.logger)
                let redisIsUp = (try? await withDeadline(self.database.deadline) { [redis] in try await redis.ping() }) != nil
                self.redisUp.record(redisIsUp ? 1 : 0)
                if redisIsUp != redisWasUp {
                    if redisIsUp {
                        self.logger.notice("Redis answers again: limits are shared again, live events cross instances again")
                    } else {
                        self.logger.error("Redis does not answer: sends go on (limits per instance, live events to this instance only, others catch up later)")
                    }
                    redisWasUp = redisIsUp
                }
                try? await Task.sleep(for: self.interval)
            }
        }
    }
}
