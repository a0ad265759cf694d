public import Foundation
public import HiredisNIO

/// Redis keys shared by the gateways (who write presence) and the mail
/// worker (who asks whether a user is connected anywhere).
///
/// Users are spread over `buckets` groups, each under a hash tag of its own
/// (`{p0}` … `{p15}`): a user's connections and the expiry index of their
/// group live in one Redis Cluster slot, so that every presence script
/// touches one slot, while the groups spread over the cluster's masters.
public enum PresenceKeys {
    public static let buckets = 16

    /// The group of a user: from the UUID's last byte (random in v4 and v7 alike).
    public static func bucket(_ userID: UUID) -> Int { Int(userID.uuid.15) % Self.buckets }

    /// The prefix of every key of a group (its hash tag included).
    public static func prefix(bucket: Int) -> String { "presence:{p\(bucket)}:" }

    /// Sorted set of a user's live connections, scored by expiry (Unix ms).
    public static func user(_ userID: UUID) -> String { Self.prefix(bucket: Self.bucket(userID)) + userID.uuidString.lowercased() }

    /// Index of a group's connections (user|connection → expiry) for the sweeper.
    public static func index(bucket: Int) -> String { Self.prefix(bucket: bucket) + "expiry" }
    public static func index(of userID: UUID) -> String { Self.index(bucket: Self.bucket(userID)) }

    /// Those of `userIDs` with a live connection on any instance, in order;
    /// one pipelined round trip.
    public static func online(_ userIDs: [UUID], redis: RedisClient) async throws -> [UUID] {
        guard !userIDs.isEmpty else { return [] }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let replies = try await redis.pipeline(userIDs.map { RedisCommand("ZCOUNT", [.string(Self.user($0)), RedisArgument(now), "+inf"]) })
        return zip(userIDs, replies).compactMap { ($0.1.int ?? 0) > 0 ? $0.0 : nil }
    }
}
