import Foundation
import HiredisNIO
import Logging
import Metrics
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Prometheus

enum GatewayTestSupport {
    /// MetricsSystem can be bootstrapped once per process: every test shares this registry.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static func configuration(redis: RedisConfiguration? = nil) throws -> GatewayConfiguration {
        let redisConfiguration = try redis ?? TestEnvironment.redisConfiguration()
        var configuration = GatewayConfiguration(
            environment: .development,
            database: try TestEnvironment.databaseSettings(),
            redis: redisConfiguration,
            host: "127.0.0.1",
            port: 0,
            jwtSecret: Array("test-secret-that-is-long-enough-to-use-1234".utf8),
            logLevel: .warning
        )
        // the whole suite runs in parallel on 2 cores: leave room for a busy machine
        configuration.readinessTimeout = .seconds(3)
        // a burst of suites registering users (password hashing) and opening
        // pools at once has taken a query past the production 2 s (503s on a
        // virtual machine with half its CPU stolen); the tests of deadlines set their own
        configuration.databaseDeadline = .seconds(10)
        return configuration
    }

    static func dependencies(redis: RedisConfiguration? = nil) async throws -> GatewayDependencies {
        await GatewayDependencies(configuration: try self.configuration(redis: redis), metrics: self.registry, logger: TestEnvironment.logger)
    }
}
