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
        if await self.announce(sessionID) { return }
        // PostgreSQL already has the revocation, and requests fall back to it
        // while Redis is down; once Redis is back the key must be there too,
        // for as long as one of the session's access tokens could live.
        logger.warning("could not announce a session revocation in Redis; retrying in the background", metadata: ["session.id": "\(sessionID.lowercased)"])
        let revocations = self
        Task.detached {
            let deadline = ContinuousClock.now + .seconds(Int64(AccessTokens.lifetime + AccessTokens.leeway))
            while ContinuousClock.now < deadline {
                try? await Task.sleep(for: .seconds(1))
                if await revocations.announce(sessionID) { return }
            }
        }
    }

    /// Sets the revocation key and tells every instance; false when Redis did not take it.
    func announce(_ sessionID: UUID) async -> Bool {
        let ttl = Int(AccessTokens.lifetime + AccessTokens.leeway)
        let replies = try? await self.redis.pipeline([
            RedisCommand("SET", [.string(Self.key(sessionID)), "1", "EX", RedisArgument(ttl)]),
            RedisCommand("PUBLISH", [.string(Self.channel), .string(sessionID.lowercased)]),
        ])
        return replies?.first?.isOK == true
    }

    public func isRevoked(_ sessionID: UUID) async throws -> Bool {
        do {
            return try await self.redis.exists(Self.key(sessionID))
        } catch {
            return try await self.accounts.isSessionRevoked(sessionID)
        }
    }
}
