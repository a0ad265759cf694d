import ArgumentParser
import Foundation
import HiredisNIO
import Hummingbird
import Metrics
import Prometheus
import Logging
import ParleyCore
import ParleyMailer
import PostgresNIO
import ServiceLifecycle
import UnixSignals

struct MailerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailer",
        abstract: "Run a mail worker: sends the mails queued on the Redis stream (several may run at once)."
    )

    @OptionGroup var common: CommonOptions

    @OptionGroup var redis: RedisOptions

    @Flag(name: .customLong("replay-dead"), help: "Move every dead-lettered mail back onto the mail stream, then exit.")
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
            let redis = RedisClient(configuration: configuration.redis, logger: logger)
            if self.replayDead {
                let moved = try await MailWorker.replayDead(redis: redis)
                logger.info("dead-lettered mails moved back to the mail stream", metadata: ["mail.count": "\(moved)"])
                await redis.shutdown()
                return
            }
            let transport: any MailTransport
            if let smtp = configuration.smtpURL {
                transport = CurlSMTPTransport(url: smtp, envelopeFrom: configuration.from.email, requireTLS: configuration.smtpRequiresTLS)
                if !configuration.smtpRequiresTLS { logger.warning("PARLEY_SMTP_URL is smtp+insecure://: mails and any SMTP credentials go over the network in plaintext") }
            } else {
                let outbox = try OutboxTransport(directory: configuration.outbox!)
                logger.notice("PARLEY_SMTP_URL is not set: mails are written as .eml files into \(configuration.outbox!.path)")
                transport = outbox
            }
            let postgres = PostgresClient(configuration: configuration.database.clientConfiguration, backgroundLogger: logger)
            let worker = MailWorker(configuration: configuration, redis: redis, postgres: postgres, transport: transport, logger: logger)
            let digests = DigestWorker(configuration: configuration, redis: redis, postgres: postgres, transport: transport, logger: logger)
            var services: [any Service] = [postgres, redis, worker, digests]
            if let registry {
                let router = Router()
                router.get("/metrics") { _, _ in String(decoding: registry.emitToBuffer(), as: UTF8.self) }
                router.get("/healthz") { _, _ in "ok" }
                services.append(Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "parley-mailer"), logger: logger))
            }
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            )
            try await group.run()
        }
    }
}
