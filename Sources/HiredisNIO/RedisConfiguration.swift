public import NIOCore
import Foundation

/// Where and how to connect: `redis://[user:password@]host[:port][/db]`,
/// or a Redis Cluster by some of its nodes:
/// `redis+cluster://[user:password@]host:port,host:port`.
public struct RedisConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// The nodes a cluster client asks for the slot map first; empty for a single server.
    public var clusterSeeds: [RedisNodeAddress] = []
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

    public var isCluster: Bool { !self.clusterSeeds.isEmpty }

    /// The same settings for one node of the cluster.
    func node(_ address: RedisNodeAddress) -> RedisConfiguration {
        var configuration = self
        configuration.host = address.host
        configuration.port = address.port
        configuration.clusterSeeds = []
        return configuration
    }

    /// Parses a `redis://` or `redis+cluster://` URL; the error message says
    /// what is wrong (never echoing the password).
    public init(url: String) throws(RedisError) {
        if url.hasPrefix("redis+cluster://") {
            try self.init(clusterURL: url.dropFirst("redis+cluster://".count))
            return
        }
        guard let components = URLComponents(string: url) else {
            throw RedisError(.invalidURL, "not a URL (expected redis://[user:password@]host:port/db)")
        }
        guard components.scheme == "redis" else {
            throw RedisError(.invalidURL, "scheme must be redis:// or redis+cluster:// (got \(components.scheme.map { "\($0)://" } ?? "none"))")
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

    private init(clusterURL rest: Substring) throws(RedisError) {
        var rest = rest
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            guard path.isEmpty || path == "0" else {
                throw RedisError(.invalidURL, "a Redis Cluster has only database 0 (got \"\(path)\")")
            }
            rest = rest[..<slash]
        }
        var user: String?, password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let parts = credentials.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            user = parts.first.flatMap { $0.removingPercentEncoding }.flatMap { $0.isEmpty ? nil : $0 }
            password = parts.count > 1 ? parts[1].removingPercentEncoding : nil
        }
        var seeds: [RedisNodeAddress] = []
        for item in rest.split(separator: ",", omittingEmptySubsequences: false) {
            guard let seed = RedisNodeAddress(item) else {
                throw RedisError(.invalidURL, "cluster nodes must be host:port, separated by commas (got \"\(item)\")")
            }
            seeds.append(seed)
        }
        self.init(host: seeds[0].host, port: seeds[0].port, username: user, password: password)
        self.clusterSeeds = seeds
    }
}
