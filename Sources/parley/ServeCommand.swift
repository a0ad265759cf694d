import ArgumentParser
import Hummingbird
import Logging
import Metrics
import ParleyCore
import ParleyGateway
import Prometheus
import ServiceLifecycle
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a gateway instance (REST + WebSocket). Stateless: run as many as you like."
    )

    @OptionGroup var common: CommonOptions

    @OptionGroup var redis: RedisOptions

    @Option(name: .customLong("host"), help: "Address to listen on (env PARLEY_HTTP_HOST, default 127.0.0.1).")
    var host: String?

    @Option(name: .customLong("port"), help: "Port to listen on, 0 for any (env PARLEY_HTTP_PORT, default 8080).")
    var port: String?

    @Option(name: .customLong("allowed-origins"), help: "Comma-separated browser origins allowed to open WebSockets (env PARLEY_ALLOWED_ORIGINS).")
    var allowedOrigins: String?

    @Flag(name: .customLong("no-migrate"), help: "Do not apply pending migrations on start.")
    var noMigrate = false

    func run() async throws {
        try await runCommand {
            let reader = self.common.settings(self.redis.overlay.merging([
                "PARLEY_HTTP_HOST": self.host, "PARLEY_HTTP_PORT": self.port,
                "PARLEY_ALLOWED_ORIGINS": self.allowedOrigins,
            ]) { $1 })
            let configuration = try GatewayConfiguration.load(reader)
            var logger = bootstrapLogging(level: configuration.logLevel, label: "parley.serve", format: try LogFormat.load(reader))
            logger[metadataKey: "instance.id"] = "\(configuration.instanceID)"
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            if !self.noMigrate {
                try await Migrator().run(database: configuration.database, logger: logger)
            }
            let dependencies = await GatewayDependencies(configuration: configuration, metrics: registry, logger: logger)
            let app = buildApplication(dependencies, logger: logger)
            // Services stop in reverse order: the drain (last) closes WebSockets with 1012 first.
            let group = ServiceGroup(
                configuration: .init(services: [app, dependencies.realtime.drain], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
        }
    }
}
