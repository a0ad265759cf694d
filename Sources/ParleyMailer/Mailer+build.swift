import Foundation
public import HiredisNIO
import Hummingbird
public import Logging
import ParleyCore
import PostgresNIO
public import Prometheus
public import ServiceLifecycle

/// The services of one notifier (`parley notifier`, formerly `parley
/// mailer`), beside the gateway's `buildApplication`: PostgreSQL and Redis
/// clients, the code-mail and digest workers on one transport (SMTP, or an
/// outbox folder in development), the Web Push worker when a VAPID key is
/// configured, the webhook worker when webhook URLs are, and, with `metrics`, `/metrics` and `/healthz` on
/// 127.0.0.1:`metrics.port`. Run them in one ServiceGroup.
public func buildMailer(
    _ configuration: MailerConfiguration,
    metrics: (port: Int, registry: PrometheusCollectorRegistry)? = nil,
    logger: Logger
) throws -> [any Service] {
    let transport: any MailTransport
    if let smtp = configuration.smtpURL {
        transport = CurlSMTPTransport(url: smtp, envelopeFrom: configuration.from.email, requireTLS: configuration.smtpRequiresTLS)
        if !configuration.smtpRequiresTLS { logger.warning("PARLEY_SMTP_URL is smtp+insecure://: mails and any SMTP credentials go over the network in plaintext") }
    } else if let outbox = configuration.outbox {
        transport = try OutboxTransport(directory: outbox)
        logger.notice("PARLEY_SMTP_URL is not set: mails are written as .eml files into \(outbox.path)")
    } else {
        // MailerConfiguration.load refuses this already; a configuration built in code may not
        throw ConfigurationError("PARLEY_SMTP_URL", "missing (set it, or PARLEY_MAIL_OUTBOX to write .eml files instead)")
    }
    let redis = RedisClient(configuration: configuration.redis, logger: logger)
    let postgres = PostgresClient(configuration: configuration.database.clientConfiguration, backgroundLogger: logger)
    // background work: a generous deadline, so that a stalled PostgreSQL fails a round
    // (retried later) instead of holding the worker
    let database = Database(client: postgres, deadline: .seconds(10), health: DatabaseHealth(logger: logger))
    let store = MailStore(database: database, logger: logger)
    var services: [any Service] = [
        postgres, redis,
        MailWorker(configuration: configuration, redis: redis, store: store, transport: transport, logger: logger),
        DigestWorker(configuration: configuration, redis: redis, store: store, transport: transport, logger: logger),
    ]
    if let vapid = configuration.push.vapid {
        services.append(
            PushWorker(
                redis: redis, store: PushStore(database: database, logger: logger), sender: WebPushSender(vapid: vapid),
                consumer: configuration.consumer, claimIdle: configuration.retryAfter, logger: logger
            )
        )
    } else {
        logger.notice("PARLEY_VAPID_PRIVATE_KEY is not set: no Web Push")
    }
    if let key = configuration.webhooks.key, !configuration.webhooks.urls.isEmpty {
        services.append(
            WebhookWorker(
                redis: redis, chats: ChatStore(database: database, logger: logger), accounts: AccountStore(database: database, logger: logger),
                sender: WebhookSender(key: key), settings: configuration.webhooks, consumer: configuration.consumer, claimIdle: configuration.retryAfter,
                logger: logger
            )
        )
    }
    if let metrics {
        let router = Router()
        router.get("/metrics") { _, _ in String(decoding: metrics.registry.emitToBuffer(), as: UTF8.self) }
        router.get("/healthz") { _, _ in "ok" }
        services.append(Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: metrics.port), serverName: "parley-mailer"), logger: logger))
    }
    return services
}
