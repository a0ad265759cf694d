import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
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
            do {
                try await group.run()
            } catch let error as IOError where error.errnoCode == EADDRINUSE {
                throw Self.portInUse(configuration)
            }
        }
    }

    /// A listener could not bind: the one line names the setting whose port
    /// is taken (both, when it cannot tell).
    static func portInUse(_ configuration: GatewayConfiguration) -> ConfigurationError {
        var listeners = [("PARLEY_HTTP_PORT", configuration.host, configuration.port)]
        if let port = configuration.metricsPort { listeners.append(("PARLEY_METRICS_PORT", configuration.metricsHost, port)) }
        let taken = listeners.filter { !canBind($0.1, $0.2) }
        if taken.count == 1, let (setting, host, port) = taken.first {
            return ConfigurationError(setting, "\(host):\(port) is already in use (another process listens there; choose another port)")
        }
        return ConfigurationError("PARLEY_HTTP_PORT", "a port is already in use: " + listeners.map { "\($0.0) \($0.1):\($0.2)" }.joined(separator: " or "))
    }

    /// Whether a listener could bind host:port now (as NIO's servers do, with SO_REUSEADDR).
    static func canBind(_ host: String, _ port: Int) -> Bool {
        let address = try? SocketAddress.makeAddressResolvingHost(host, port: port)
        guard let address else { return true }
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        return address.withSockAddr { pointer, size in bind(fd, pointer, socklen_t(size)) == 0 }
    }
}
