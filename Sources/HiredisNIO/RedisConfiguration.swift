public import NIOCore
import Foundation

/// Where and how to connect: `redis://[user:password@]host[:port][/db]`.
public struct RedisConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    public var connectTimeout: TimeAmount = .seconds(2)
    public var commandTimeout: TimeAmount = .seconds(5)
    /// Connections in the command pool (each is pipelined, so a few suffice).
    public var poolSize: Int = 4

    public init(host: String, port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses a `redis://` URL; the error message says what is wrong (never echoing the password).
    public init(url: String) throws(RedisError) {
        guard let components = URLComponents(string: url) else {
            throw RedisError(.invalidURL, "not a URL (expected redis://[user:password@]host:port/db)")
        }
        guard components.scheme == "redis" else {
            throw RedisError(.invalidURL, "scheme must be redis:// (got \(components.scheme.map { "\($0)://" } ?? "none"))")
        }
        guard let host = components.host, !host.isEmpty else {
            throw RedisError(.invalidURL, "missing host (expected redis://host:port/db)")
        }
        let port = components.port ?? 6379
        guard (1...65535).contains(port) else { throw RedisError(.invalidURL, "port \(port) out of range") }
        var database = 0
        let path = components.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else {
                throw RedisError(.invalidURL, "database must be a non-negative integer (got \"\(path)\")")
            }
            database = db
        }
        let user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding }.flatMap { $0.isEmpty ? nil : $0 }
        let password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        self.init(host: host, port: port, username: user, password: password, database: database)
    }
}
