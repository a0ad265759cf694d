public import Foundation
public import HiredisNIO
public import Logging
public import ParleyCore

/// Revoked sessions, visible to every instance at once: a Redis key that
/// lives as long as an access token could, checked on each authenticated
/// request. If Redis cannot answer, PostgreSQL decides (fail closed).
public struct SessionRevocations: Sendable {
    public static let channel = "sessions:revoked"
    let redis: RedisClient
    let accounts: AccountStore

    public init(redis: RedisClient, accounts: AccountStore) {
        self.redis = redis
        self.accounts = accounts
    }

    static func key(_ sessionID: UUID) -> String { "revoked:{\(sessionID.lowercased)}" }

    public func revoke(_ sessionID: UUID, logger: Logger) async {
        let ttl = Int(AccessTokens.lifetime + AccessTokens.leeway)
        do {
            _ = try await self.redis.pipeline([
                RedisCommand("SET", [.string(Self.key(sessionID)), "1", "EX", RedisArgument(ttl)]),
                RedisCommand("PUBLISH", [.string(Self.channel), .string(sessionID.lowercased)]),
            ])
        } catch {
            // PostgreSQL already has the revocation; requests fall back to it while Redis is down.
            logger.warning("could not announce a session revocation in Redis", metadata: ["error": "\(error)"])
        }
    }

    public func isRevoked(_ sessionID: UUID) async throws -> Bool {
        do {
            return try await self.redis.exists(Self.key(sessionID))
        } catch {
            return try await self.accounts.isSessionRevoked(sessionID)
        }
    }
}
