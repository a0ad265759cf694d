import ArgumentParser
import Foundation
import HiredisNIO
import Metrics
import Prometheus
import Logging
import ParleyCore
import ParleyMailer
import ServiceLifecycle
import UnixSignals

struct MailerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifier",
        abstract: "Run a notifier: sign-in mails, unread digests and, when configured, Web Push and webhooks (several may run at once).",
        discussion: "`parley mailer` is the same command under its earlier name.",
        aliases: ["mailer"]
    )

    @OptionGroup var common: CommonOptions

    @OptionGroup var redis: RedisOptions

    @Flag(name: .customLong("replay-dead"), help: "Move every dead-lettered mail and webhook back to be sent again, then exit.")
    var replayDead = false

    @Option(name: .customLong("metrics-port"), help: "Serve /metrics (Prometheus) and /healthz on 127.0.0.1:PORT (env PARLEY_MAILER_METRICS_PORT).")
    var metricsPort: String?

    func run() async throws {
        try await runCommand {
            let reader = self.common.settings(self.redis.overlay.merging(["PARLEY_MAILER_METRICS_PORT": self.metricsPort]) { $1 })
            let configuration = try MailerConfiguration.load(reader)
            let port = try reader.integer("PARLEY_MAILER_METRICS_PORT", default: -1, range: -1...65535)
            let logger = bootstrapLogging(level: try LogSettings.load(reader), label: "parley.mailer", format: try LogFormat.load(reader))
            // before any worker creates its counters
            var registry: PrometheusCollectorRegistry?
            if port >= 0 {
                registry = PrometheusCollectorRegistry()
                MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry!))
            }
            if self.replayDead {
                let redis = RedisClient(configuration: configuration.redis, logger: logger)
                let moved = try await MailWorker.replayDead(redis: redis)
                logger.info("dead-lettered mails moved back to the mail stream", metadata: ["mail.count": "\(moved)"])
                let webhooks = try await WebhookWorker.replayDead(redis: redis)
                logger.info("dead-lettered webhooks queued again", metadata: ["webhook.count": "\(webhooks)"])
                await redis.shutdown()
                return
            }
            let services = try buildMailer(configuration, metrics: registry.map { (port, $0) }, logger: logger)
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
        }
    }
}
