import Foundation
public import HiredisNIO
public import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
public import Logging
public import ParleyCore
public import PostgresNIO
public import Prometheus

/// The long-lived clients a gateway process shares across requests.
public struct GatewayDependencies: Sendable {
    public let configuration: GatewayConfiguration
    public let postgres: PostgresClient
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
        let store = AccountStore(client: self.postgres, logger: logger)
        self.accounts = AccountServices(
            environment: configuration.environment,
            accounts: store,
            hasher: PasswordHasher(cost: passwordCost),
            tokens: await AccessTokens(secret: configuration.jwtSecret),
            codes: OneTimeCodes(redis: self.redis, secret: configuration.jwtSecret),
            limiter: RateLimiter(redis: self.redis),
            revocations: SessionRevocations(redis: self.redis, accounts: store, logger: logger),
            limits: limits
        )
        var chats = ChatService(
            store: ChatStore(client: self.postgres, logger: logger),
            publisher: ChatEventPublisher(redis: self.redis),
            limiter: RateLimiter(redis: self.redis)
        )
        chats.sendLimit = [RateLimitRule(3 * configuration.sendsPerSecond, per: .seconds(3))]
        self.chats = chats
        self.realtime = RealtimeService(
            redisConfiguration: configuration.redis, redis: self.redis, chats: chats, revocations: self.accounts.revocations, limits: configuration.realtime,
            logger: logger
        )
    }

    var realtimeRoutes: RealtimeRoutes {
        RealtimeRoutes(
            realtime: self.realtime, accounts: self.accounts, redis: self.redis, allowedOrigins: Set(self.configuration.allowedOrigins), logger: self.realtime.logger
        )
    }
}

/// Builds the router: operations endpoints, then every API controller.
/// `configure` lets tests add routes that share the same middleware.
public func buildRouter(
    _ dependencies: GatewayDependencies,
    configure: (Router<ParleyRequestContext>) -> Void = { _ in }
) -> Router<ParleyRequestContext> {
    let router = Router(context: ParleyRequestContext.self)
    router.add(middleware: RequestIDMiddleware())
    router.add(middleware: ClientAddressMiddleware(trustedProxies: dependencies.configuration.trustedProxies))
    router.add(middleware: MetricsMiddleware())
    router.add(middleware: ProblemMiddleware())
    OperationsController(
        postgres: dependencies.postgres, redis: dependencies.redis, registry: dependencies.metrics,
        readinessTimeout: dependencies.configuration.readinessTimeout
    )
        .addRoutes(to: router)
    AuthController(services: dependencies.accounts).addRoutes(to: router.group("v1/auth"))
    let authenticated = router.group("v1").add(middleware: AuthMiddleware(tokens: dependencies.accounts.tokens, revocations: dependencies.accounts.revocations))
    UsersController(services: dependencies.accounts).addRoutes(to: authenticated)
    ChatsController(service: dependencies.chats).addRoutes(to: authenticated)
    dependencies.realtimeRoutes.addHTTPRoutes(to: router, authenticated: authenticated)
    configure(router)
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
    let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
    dependencies.realtimeRoutes.addWebSocketRoute(to: webSocketRouter)
    let limits = dependencies.realtime.limits
    let webSocketResponder = webSocketRouter.buildResponder()
    return Application(
        router: router,
        server: HTTPServerBuilder { responder in
            OriginGuardChannel(
                inner: HTTP1WebSocketUpgradeChannel(
                    responder: responder,
                    webSocketResponder: webSocketResponder,
                    configuration: .init(ws: .init(maxFrameSize: limits.frameBytes, autoPing: .enabled(timePeriod: limits.heartbeat), closeTimeout: .seconds(5)))
                ),
                allowed: Set(configuration.allowedOrigins)
            )
        },
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "parley"),
        services: [dependencies.postgres, dependencies.redis, dependencies.accounts.revocations, dependencies.realtime],
        onServerRunning: { channel in
            logger.info(
                "gateway listening",
                metadata: ["http.address": "\(channel.localAddress?.description ?? "?")", "instance.id": "\(configuration.instanceID)"]
            )
        },
        logger: logger
    )
}
