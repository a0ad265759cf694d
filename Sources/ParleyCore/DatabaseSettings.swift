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
    /// Connections in the pool of each process.
    public var maxConnections: Int = 20

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
        configuration.options.maximumConnections = self.maxConnections
        configuration.options.connectionIdleTimeout = .seconds(60)
        // A client that stalls inside a transaction must not keep its row
        // locks (a chat's lock stops every send to that chat): the server
        // ends such a session after 15 s.
        configuration.options.additionalStartupParameters = [("idle_in_transaction_session_timeout", "15000")]
        if let lockTimeout {
            configuration.options.additionalStartupParameters.append(("lock_timeout", String(lockTimeout.milliseconds)))
        }
        return configuration
    }
}
