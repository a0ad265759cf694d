import Foundation
public import HiredisNIO
public import Hummingbird
import HummingbirdCore
public import Logging
public import ParleyCore
public import PostgresNIO
public import Prometheus
import ServiceLifecycle
public import ParleyChat

/// The long-lived clients a gateway process shares across requests.
public struct GatewayDependencies: Sendable {
    public let configuration: GatewayConfiguration
    public let postgres: PostgresClient
    /// PostgreSQL for request and socket paths: a deadline on every call, a circuit breaker.
    public let database: Database
    public let redis: RedisClient
    public let metrics: PrometheusCollectorRegistry
    public let accounts: AccountServices
    public let chats: ChatService
    public let realtime: RealtimeService

    public init(
        configuration: GatewayConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger,
        limits: AccountLimits = AccountLimits(), passwordCost: PasswordHasher.Cost = .owaspMinimum
    ) async {
        self.configuration = configuration
        // row locks are waited for at most 5 s: under the send writer's 10 s deadline
        self.postgres = PostgresClient(configuration: configuration.database.clientConfiguration(lockTimeout: .seconds(5)), backgroundLogger: logger)
        self.redis = RedisClient(configuration: configuration.redis, logger: logger)
        self.metrics = metrics
        self.database = Database(client: self.postgres, deadline: configuration.databaseDeadline, health: DatabaseHealth(logger: logger))
        let store = AccountStore(database: self.database, logger: logger)
        // one limiter per process: its in-memory fallback (Redis down) is shared
        let limiter = RateLimiter(redis: self.redis)
        let publisher = ChatEventPublisher(redis: self.redis, pushEnabled: configuration.push.vapid != nil)
        var accounts = AccountServices(
            environment: configuration.environment,
            accounts: store,
            hasher: PasswordHasher(cost: passwordCost),
            tokens: await AccessTokens(secret: configuration.jwtSecret),
            codes: OneTimeCodes(redis: self.redis, secret: configuration.jwtSecret),
            limiter: limiter,
            revocations: SessionRevocations(redis: self.redis, accounts: store, logger: logger),
            limits: limits,
            passwordStrength: configuration.passwordStrength,
            refreshTokens: RefreshTokens(secret: configuration.jwtSecret),
            publisher: publisher,
            push: PushStore(database: self.database, logger: logger)
        )
        accounts.pushSettings = configuration.push
        self.accounts = accounts
        var chats = ChatService(
            store: ChatStore(database: self.database, logger: logger),
            publisher: publisher,
            limiter: limiter,
            batching: configuration.sendBatching
        )
        chats.limits = configuration.chatLimits
        self.chats = chats
        self.realtime = RealtimeService(
            redisConfiguration: configuration.redis, redis: self.redis, chats: chats, revocations: self.accounts.revocations, limits: configuration.realtime,
            logger: logger
        )
    }

    func operations(detailed: Bool) -> OperationsController {
        OperationsController(
            database: self.database, redis: self.redis, registry: self.metrics, readinessTimeout: self.configuration.readinessTimeout, detailed: detailed
        )
    }

    var realtimeRoutes: RealtimeRoutes {
        RealtimeRoutes(
            realtime: self.realtime, accounts: self.accounts, allowedOrigins: Set(self.configuration.allowedOrigins), logger: self.realtime.logger
        )
    }
}

/// Builds the router: operations endpoints, then every API controller.
/// `configure` lets tests add routes that share the same middleware.
public func buildRouter(
    _ dependencies: GatewayDependencies,
    configure: (Router<ParleyRequestContext>) -> Void = { _ in }
) -> Router<ParleyRequestContext> {
    // every GET route answers HEAD too (monitors and `curl -I`): the same status and headers, no body
    let router = Router(context: ParleyRequestContext.self, options: .autoGenerateHeadEndpoints)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ClientAddressMiddleware(trustedProxies: dependencies.configuration.trustedProxies))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware())
    dependencies.operations(detailed: false).addRoutes(to: router)
    ReferenceController().addRoutes(to: router)
    WebClientController(environment: dependencies.configuration.environment, mailHint: dependencies.configuration.webMailHint).addRoutes(to: router)
    AuthController(services: dependencies.accounts).addRoutes(to: router.group("v1/auth"))
    let authenticated = router.group("v1").add(middleware: AuthMiddleware(tokens: dependencies.accounts.tokens, revocations: dependencies.accounts.revocations))
    UsersController(services: dependencies.accounts).addRoutes(to: authenticated)
    PushController(services: dependencies.accounts).addRoutes(to: authenticated)
    ChatsController(service: dependencies.chats).addRoutes(to: authenticated)
    dependencies.realtimeRoutes.addHTTPRoutes(to: router, authenticated: authenticated)
    configure(router)
    return router
}

/// The operations listener (`PARLEY_METRICS_HOST`:`PARLEY_METRICS_PORT`):
/// `/metrics`, and `/readyz` naming what is down, kept off the public port.
public func buildOperationsRouter(_ dependencies: GatewayDependencies) -> Router<BasicRequestContext> {
    let router = Router(options: .autoGenerateHeadEndpoints)
    router.add(middleware: ProblemMiddleware())
    dependencies.operations(detailed: true).addRoutes(to: router)
    return router
}

/// The gateway application: HTTP server plus the services it depends on,
/// all stopped together on SIGTERM/SIGINT.
public func buildApplication(
    _ dependencies: GatewayDependencies,
    logger: Logger,
    configure: (Router<ParleyRequestContext>) -> Void = { _ in }
) -> some ApplicationProtocol {
    let configuration = dependencies.configuration
    for warning in configuration.startupWarnings { logger.warning("\(warning)") }
    let router = buildRouter(dependencies, configure: configure)
    let realtimeRoutes = dependencies.realtimeRoutes
    let limits = dependencies.realtime.limits
    var services: [any Service] = [
        // stopped in reverse order on SIGTERM, after the HTTP server: the writer
        // finishes the queued sends while PostgreSQL and Redis are still there
        dependencies.postgres, dependencies.redis, dependencies.chats.writer, dependencies.accounts.revocations, dependencies.realtime,
        DependencyMonitor(database: dependencies.database, redis: dependencies.redis, logger: logger),
    ]
    if let port = configuration.metricsPort {
        services.append(
            Application(
                router: buildOperationsRouter(dependencies),
                configuration: .init(address: .hostname(configuration.metricsHost, port: port), serverName: "parley-operations"),
                onServerRunning: { channel in
                    logger.info("operations listener (/metrics, /readyz)", metadata: ["http.address": "\(channel.localAddress?.description ?? "?")"])
                },
                logger: logger
            )
        )
    }
    return Application(
        router: router,
        server: HTTPServerBuilder { responder in
            GatewayChannel(
                responder: responder,
                // a kept-alive connection with no request for this long is closed, as is
                // one whose next request head does not arrive within it
                http1: .init(idleTimeout: .milliseconds(configuration.idleTimeout.milliseconds)),
                maxFrameSize: limits.frameBytes,
                allowedOrigins: Set(configuration.allowedOrigins),
                headTimeout: configuration.headTimeout,
                webSocket: realtimeRoutes.webSocketSession(target:origins:host:)
            )
        },
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "parley"),
        services: services,
        onServerRunning: { channel in
            logger.info(
                "gateway listening",
                metadata: ["http.address": "\(channel.localAddress?.description ?? "?")", "instance.id": "\(configuration.instanceID)"]
            )
        },
        logger: logger
    )
}
