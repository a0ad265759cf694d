public import Foundation
public import HiredisNIO
public import Logging
public import ParleyCore
public import ParleyChat

/// Everything `parley serve` needs, validated at start.
public struct GatewayConfiguration: Sendable {
    public var environment: DeploymentEnvironment
    public var database: DatabaseSettings
    public var redis: RedisConfiguration
    public var host: String
    public var port: Int
    public var jwtSecret: [UInt8]
    /// Browser origins allowed to open WebSockets (`scheme://host[:port]`),
    /// besides the gateway's own (the web client's).
    public var allowedOrigins: [String]
    /// What the web client shows after a code request: where mails go in
    /// development (PARLEY_WEB_MAIL_HINT).
    public var webMailHint: String?
    /// Per-user limits of chat writes.
    public var chatLimits = ChatLimits()
    /// How sends are grouped into transactions.
    public var sendBatching = SendBatching()
    public var realtime = RealtimeLimits()
    /// The operations listener (`/metrics`, detailed `/readyz`): off unless a port is set.
    public var metricsHost = "127.0.0.1"
    public var metricsPort: Int?
    /// The first request head of a connection must arrive within this.
    public var headTimeout: Duration = .seconds(10)
    /// A kept-alive connection idle this long (no request, or a request head
    /// that does not complete) is closed.
    public var idleTimeout: Duration = .seconds(60)
    /// The longest a request or a WebSocket frame waits for PostgreSQL (then 503 `unavailable`).
    public var databaseDeadline: Duration = .seconds(2)
    /// How long `/readyz` waits for each dependency.
    public var readinessTimeout: Duration = .seconds(1)
    /// Refuses guessable passwords at registration (cracklib).
    public var passwordStrength = PasswordStrength()
    /// Web Push: the VAPID key whose public half clients subscribe with, and which endpoints are accepted.
    public var push = PushSettings()
    /// Load balancers whose X-Forwarded-For is believed (IP addresses).
    public var trustedProxies: [String] = []
    public var logLevel: Logger.Level
    /// Names this process in logs, metrics and presence.
    public var instanceID: String
    /// Warnings to log once a logger exists (e.g. a generated development secret).
    public var startupWarnings: [String] = []

    public static let minimumSecretBytes = JWTSecretSettings.minimumBytes

    public init(
        environment: DeploymentEnvironment = .production,
        database: DatabaseSettings,
        redis: RedisConfiguration,
        host: String = "127.0.0.1",
        port: Int = 8080,
        jwtSecret: [UInt8],
        allowedOrigins: [String] = [],
        logLevel: Logger.Level = .info,
        instanceID: String = UUID().uuidString.lowercased()
    ) {
        self.environment = environment
        self.database = database
        self.redis = redis
        self.host = host
        self.port = port
        self.jwtSecret = jwtSecret
        self.allowedOrigins = allowedOrigins
        self.logLevel = logLevel
        self.instanceID = instanceID
    }

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> GatewayConfiguration {
        let environment = try DeploymentEnvironment.load(reader)
        let database = try DatabaseSettings.load(reader)
        let redis = try RedisSettings.load(reader)
        let host = reader.optional("PARLEY_HTTP_HOST") ?? "127.0.0.1"
        let port = try reader.integer("PARLEY_HTTP_PORT", default: 8080, range: 0...65535)
        var warnings: [String] = []
        let secret: [UInt8]
        if let configured = try JWTSecretSettings.load(reader) {
            secret = configured
        } else if environment == .development {
            secret = (0..<48).map { _ in UInt8.random(in: .min ... .max) }
            warnings.append("PARLEY_JWT_SECRET is not set: generated a random one for this process (development mode); tokens will not work on other instances")
        } else {
            throw ConfigurationError("PARLEY_JWT_SECRET", "missing (set it to a random string of at least \(Self.minimumSecretBytes) bytes, e.g. openssl rand -base64 48)")
        }
        let origins = try Self.parseOrigins(reader.optional("PARLEY_ALLOWED_ORIGINS"))
        let logLevel = try LogSettings.load(reader)
        var configuration = GatewayConfiguration(
            environment: environment, database: database, redis: redis, host: host, port: port, jwtSecret: secret,
            allowedOrigins: origins, logLevel: logLevel,
            instanceID: reader.optional("PARLEY_INSTANCE_ID") ?? "\(ProcessInfo.processInfo.hostName):\(port):\(ProcessInfo.processInfo.processIdentifier)"
        )
        if let hint = reader.optional("PARLEY_WEB_MAIL_HINT") {
            guard hint.count <= 300, !hint.contains(where: \.isNewline) else {
                throw ConfigurationError("PARLEY_WEB_MAIL_HINT", "must be one line of at most 300 characters")
            }
            configuration.webMailHint = hint
        }
        configuration.trustedProxies = try Self.parseAddresses(reader.optional("PARLEY_TRUSTED_PROXIES"))
        configuration.push = try PushSettings.load(reader)
        configuration.metricsHost = reader.optional("PARLEY_METRICS_HOST") ?? "127.0.0.1"
        configuration.metricsPort = try reader.optionalInteger("PARLEY_METRICS_PORT", range: 0...65535)
        configuration.databaseDeadline = .milliseconds(try reader.integer("PARLEY_DATABASE_DEADLINE_MS", default: 2000, range: 100...60_000))
        configuration.headTimeout = .milliseconds(try reader.integer("PARLEY_HTTP_HEAD_TIMEOUT_MS", default: 10_000, range: 100...600_000))
        configuration.idleTimeout = .milliseconds(try reader.integer("PARLEY_HTTP_IDLE_TIMEOUT_MS", default: 60_000, range: 100...3_600_000))
        configuration.passwordStrength = PasswordStrength(dictionary: reader.optional("PARLEY_CRACKLIB_DICT") ?? PasswordStrength.defaultDictionary)
        try configuration.passwordStrength.validate()
        let sendsPerSecond = try reader.integer("PARLEY_SENDS_PER_SECOND", default: 10, range: 1...100_000)
        configuration.chatLimits.sends = [RateLimitRule(3 * sendsPerSecond, per: .seconds(3))]
        let searchesPerSecond = try reader.integer("PARLEY_SEARCHES_PER_SECOND", default: 5, range: 1...100_000)
        configuration.chatLimits.searches = [RateLimitRule(3 * searchesPerSecond, per: .seconds(3))]
        configuration.sendBatching.maxBatch = try reader.integer("PARLEY_SEND_BATCH_MAX", default: 500, range: 1...5000)
        configuration.sendBatching.maxInFlight = try reader.integer("PARLEY_SEND_CONCURRENCY", default: 1, range: 1...64)
        configuration.sendBatching.minInterval = .microseconds(try reader.integer("PARLEY_SEND_BATCH_INTERVAL_US", default: 2000, range: 0...100_000))
        configuration.realtime.queuedFrames = try reader.integer("PARLEY_WS_QUEUE_LIMIT", default: 1000, range: 10...1_000_000)
        configuration.realtime.queuedBytes = try reader.integer("PARLEY_WS_QUEUE_BYTES", default: 4 << 20, range: (256 << 10)...(1 << 30))
        configuration.realtime.connectionsPerUser = try reader.integer("PARLEY_WS_CONNECTIONS_PER_USER", default: 20, range: 1...10_000)
        configuration.realtime.reorderWindow = .milliseconds(try reader.integer("PARLEY_WS_REORDER_MS", default: 100, range: 0...5000))
        configuration.realtime.heartbeat = .seconds(try reader.integer("PARLEY_WS_HEARTBEAT_S", default: 25, range: 1...300))
        configuration.startupWarnings = warnings
        return configuration
    }

    /// A comma-separated list of IPv4/IPv6 addresses.
    static func parseAddresses(_ raw: String?) throws(ConfigurationError) -> [String] {
        guard let raw else { return [] }
        var addresses: [String] = []
        for item in raw.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            var v4 = in_addr()
            var v6 = in6_addr()
            guard inet_pton(AF_INET, item, &v4) == 1 || inet_pton(AF_INET6, item, &v6) == 1 else {
                throw ConfigurationError("PARLEY_TRUSTED_PROXIES", "\"\(item)\" is not an IP address")
            }
            addresses.append(item)
        }
        return addresses
    }

    /// A comma-separated list of origins such as `https://chat.example.com,http://localhost:5173`.
    static func parseOrigins(_ raw: String?) throws(ConfigurationError) -> [String] {
        guard let raw else { return [] }
        var origins: [String] = []
        for item in raw.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            guard let url = URLComponents(string: item), let scheme = url.scheme, ["http", "https"].contains(scheme),
                let host = url.host, !host.isEmpty, url.path.isEmpty || url.path == "/", url.query == nil
            else {
                throw ConfigurationError("PARLEY_ALLOWED_ORIGINS", "\"\(item)\" is not an origin (expected scheme://host[:port], comma-separated)")
            }
            origins.append("\(scheme)://\(host.lowercased())\(url.port.map { ":\($0)" } ?? "")")
        }
        return origins
    }
}
