public import Foundation
public import HiredisNIO

/// Redis keys shared by the gateways (who write presence) and the mail
/// worker (who asks whether a user is connected anywhere).
public enum PresenceKeys {
    /// Sorted set of a user's live connections, scored by expiry (Unix ms).
    public static func user(_ userID: UUID) -> String { "presence:{\(userID.uuidString.lowercased())}" }
    /// Index of every connection (user|connection → expiry) for the sweeper.
    public static let index = "presence:expiry"

    /// Those of `userIDs` with a live connection on any instance, in order;
    /// one pipelined round trip.
    public static func online(_ userIDs: [UUID], redis: RedisClient) async throws -> [UUID] {
        guard !userIDs.isEmpty else { return [] }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let replies = try await redis.pipeline(userIDs.map { RedisCommand("ZCOUNT", [.string(Self.user($0)), RedisArgument(now), "+inf"]) })
        return zip(userIDs, replies).compactMap { ($0.1.int ?? 0) > 0 ? $0.0 : nil }
    }
}
