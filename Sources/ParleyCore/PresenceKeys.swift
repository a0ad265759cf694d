public import Foundation

/// Redis keys shared by the gateways (who write presence) and the mail
/// worker (who asks whether a user is connected anywhere).
public enum PresenceKeys {
    /// Sorted set of a user's live connections, scored by expiry (Unix ms).
    public static func user(_ userID: UUID) -> String { "presence:{\(userID.uuidString.lowercased())}" }
    /// Index of every connection (user|connection → expiry) for the sweeper.
    public static let index = "presence:expiry"
}
