public import Foundation
public import HiredisNIO

/// Redis keys shared by the gateways (who write presence) and the mail
/// worker (who asks whether a user is connected anywhere).
///
/// With a single Redis: a sorted set per user, `presence:{<user>}`, and one
/// expiry index, `presence:expiry`, as earlier versions keep them (a
/// rolling upgrade shares them). In a Redis Cluster, users are spread over
/// 16 groups, each under a hash tag of its own (`presence:{p0}:<user>` …
/// `presence:{p15}:expiry`): a user's connections and the expiry index of
/// their group live in one slot, so that every presence script touches one
/// slot, while the groups spread over the masters.
public enum PresenceKeys {
    /// The number of groups.
    public static func buckets(cluster: Bool) -> Int { cluster ? 16 : 1 }

    /// The group of a user: from the UUID's last byte (random in v4 and v7 alike).
    public static func bucket(_ userID: UUID, cluster: Bool) -> Int { Int(userID.uuid.15) % Self.buckets(cluster: cluster) }

    /// What a user's key is made of: prefix, the user's id, suffix.
    public static func userKeyParts(bucket: Int, cluster: Bool) -> (prefix: String, suffix: String) {
        cluster ? ("presence:{p\(bucket)}:", "") : ("presence:{", "}")
    }

    /// Sorted set of a user's live connections, scored by expiry (Unix ms).
    public static func user(_ userID: UUID, cluster: Bool) -> String {
        let (prefix, suffix) = Self.userKeyParts(bucket: Self.bucket(userID, cluster: cluster), cluster: cluster)
        return prefix + userID.uuidString.lowercased() + suffix
    }

    /// Index of a group's connections (user|connection → expiry) for the sweeper.
    public static func index(bucket: Int, cluster: Bool) -> String { cluster ? "presence:{p\(bucket)}:expiry" : "presence:expiry" }

    /// Those of `userIDs` with a live connection on any instance, in order;
    /// one pipelined round trip.
    public static func online(_ userIDs: [UUID], redis: RedisClient) async throws -> [UUID] {
        guard !userIDs.isEmpty else { return [] }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let cluster = redis.configuration.isCluster
        let replies = try await redis.pipeline(userIDs.map { RedisCommand("ZCOUNT", [.string(Self.user($0, cluster: cluster)), RedisArgument(now), "+inf"]) })
        return zip(userIDs, replies).compactMap { ($0.1.int ?? 0) > 0 ? $0.0 : nil }
    }
}
