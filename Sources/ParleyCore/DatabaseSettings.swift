import Foundation
import NIOSSL
public import PostgresNIO

/// `PARLEY_DATABASE_URL`: `postgres://user:password@host:port/database[?sslmode=disable|require]`.
public struct DatabaseSettings: Sendable {
    public static let variable = "PARLEY_DATABASE_URL"

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var requireTLS: Bool
    /// Connections in the pool of each process, all opened at start.
    public var maxConnections: Int = 20
    /// TCP keep-alive of the server's side of each connection: seconds idle
    /// before the first probe, seconds between probes, probes unanswered
    /// before the server drops the connection.
    static let tcpKeepAlive = (idle: 30, interval: 10, count: 3)

    public init(url: String) throws(ConfigurationError) {
        let name = Self.variable
        guard let components = URLComponents(string: url), let scheme = components.scheme else {
            throw ConfigurationError(name, "not a URL (expected postgres://user:password@host:port/database)")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw ConfigurationError(name, "scheme must be postgres:// (got \(scheme)://)")
        }
        guard let host = components.host, !host.isEmpty else { throw ConfigurationError(name, "missing host") }
        guard let user = components.percentEncodedUser?.removingPercentEncoding, !user.isEmpty else {
            throw ConfigurationError(name, "missing user name (postgres://USER@host/database)")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw ConfigurationError(name, "missing database name (postgres://user@host:port/DATABASE)")
        }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw ConfigurationError(name, "port \(port) out of range") }
        var requireTLS = false
        for item in components.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "disable"): requireTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-full"): requireTLS = true
            case ("sslmode", let other): throw ConfigurationError(name, "sslmode must be disable, require or verify-full (got \"\(other)\")")
            case (let other, _): throw ConfigurationError(name, "unknown parameter \"\(other)\" (only sslmode is supported)")
            }
        }
        self.host = host
        self.port = port
        self.username = user
        self.password = components.percentEncodedPassword?.removingPercentEncoding
        self.database = database
        self.requireTLS = requireTLS
    }

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> DatabaseSettings {
        try DatabaseSettings(url: reader.required(Self.variable, hint: "set it or pass --database-url, e.g. postgres://parley@127.0.0.1:5432/parley"))
    }

    public var clientConfiguration: PostgresClient.Configuration { self.clientConfiguration(lockTimeout: nil) }

    /// `lockTimeout`: the longest any statement of these sessions waits for a
    /// row lock before failing (the gateway's sends give up before their own
    /// deadline, so a batch they report as failed is never committed later).
    public func clientConfiguration(lockTimeout: Duration?) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: self.host,
            port: self.port,
            username: self.username,
            password: self.password,
            database: self.database,
            tls: self.requireTLS ? .require(.makeClientConfiguration()) : .disable
        )
        // A fixed-size pool, opened at start, with no keep-alive pings: the
        // pool arms a timer for each of those every time a connection goes
        // back idle (after every statement), and that cost more gateway CPU
        // than the statements (BENCHMARKS.md, "PostgreSQL pool timers").
        configuration.options.maximumConnections = self.maxConnections
        configuration.options.minimumConnections = self.maxConnections
        configuration.options.keepAliveBehavior = nil
        configuration.options.additionalStartupParameters = [
            // A client that stalls inside a transaction must not keep its row
            // locks (a chat's lock stops every send to that chat): the server
            // ends such a session after 15 s.
            ("idle_in_transaction_session_timeout", "15000"),
            // Instead of the pool's pings, the server's TCP keep-alives keep
            // idle connections open through NATs and load balancers, and end
            // the sessions of a client that is gone.
            ("tcp_keepalives_idle", String(Self.tcpKeepAlive.idle)),
            ("tcp_keepalives_interval", String(Self.tcpKeepAlive.interval)),
            ("tcp_keepalives_count", String(Self.tcpKeepAlive.count)),
        ]
        if let lockTimeout {
            configuration.options.additionalStartupParameters.append(("lock_timeout", String(lockTimeout.milliseconds)))
        }
        return configuration
    }
}
