public import Foundation
public import Logging
public import PostgresNIO
import NIOCore

/// A user as stored.
public struct UserRecord: Sendable, Hashable {
    public var id: UUID
    public var email: String
    public var emailVerified: Bool
    public var displayName: String
    public var passwordHash: String?
    public var emailNotifications: Bool
    public var createdAt: Date
}

/// What presenting a refresh token led to.
public enum RefreshOutcome: Sendable, Hashable {
    /// The token was current: it is now spent and `newHash` is the session's token.
    case rotated(sessionID: UUID, user: UserRecord)
    /// The token had been spent already: the session is now revoked.
    case reused(sessionID: UUID)
    /// Unknown token, or its session is revoked or past its absolute expiry.
    case invalid
}

/// Users, sessions and refresh tokens in PostgreSQL. SQL goes only through
/// `PostgresQuery` interpolation (bound parameters).
public struct AccountStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    static let userColumns = "id, email, email_verified, display_name, password_hash, email_notifications, created_at"

    static func user(_ row: PostgresRow) throws -> UserRecord {
        let (id, email, verified, name, hash, notifications, created) = try row.decode(
            (UUID, String, Bool, String, String?, Bool, Date).self
        )
        return UserRecord(id: id, email: email, emailVerified: verified, displayName: name, passwordHash: hash, emailNotifications: notifications, createdAt: created)
    }

    private func firstUser(_ query: PostgresQuery) async throws -> UserRecord? {
        let rows = try await self.client.query(query, logger: self.logger)
        for try await row in rows { return try Self.user(row) }
        return nil
    }

    // MARK: users

    /// Creates a password account; nil when the email is taken.
    public func createUser(email: String, displayName: String, passwordHash: String) async throws -> UserRecord? {
        try await self.firstUser(
            """
            INSERT INTO users (id, email, display_name, password_hash)
            VALUES (\(UUID.v7()), \(email), \(displayName), \(passwordHash))
            ON CONFLICT (email) DO NOTHING
            RETURNING \(unescaped: Self.userColumns)
            """
        )
    }

    /// The account of a verified email: created on first use, marked verified
    /// otherwise. Proving the address for the first time takes the account
    /// over from whoever registered it unverified: their password is removed
    /// and their sessions are revoked (returned, to be announced).
    public func upsertVerifiedUser(email: String, displayName: String) async throws -> (user: UserRecord, revokedSessions: [UUID]) {
        try await self.client.transaction(logger: self.logger) { connection in
            // Insert first: if a registration of this email is in flight, the insert
            // waits for it and then does nothing, and the next statement (a new
            // snapshot) sees that row, so it cannot slip past the takeover below.
            try await connection.query(
                """
                INSERT INTO users (id, email, display_name, email_verified) VALUES (\(UUID.v7()), \(email), \(displayName), true)
                ON CONFLICT (email) DO NOTHING
                """,
                logger: self.logger
            )
            var existing: (id: UUID, verified: Bool)?
            for try await row in try await connection.query(
                "SELECT id, email_verified FROM users WHERE email = \(email) FOR UPDATE", logger: self.logger
            ).decode((UUID, Bool).self) {
                existing = (row.0, row.1)
            }
            guard let existing else { throw StoreError("the verified account is missing") }
            var revoked: [UUID] = []
            if !existing.verified {
                try await connection.query(
                    "UPDATE users SET password_hash = NULL, email_verified = true, updated_at = now() WHERE id = \(existing.id)", logger: self.logger
                )
                for try await id in try await connection.query(
                    """
                    UPDATE sessions SET revoked_at = now(), revoked_reason = 'admin'
                    WHERE user_id = \(existing.id) AND revoked_at IS NULL RETURNING id
                    """,
                    logger: self.logger
                ).decode(UUID.self) {
                    revoked.append(id)
                }
            }
            var user: UserRecord?
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email)", logger: self.logger
            ) {
                user = try Self.user(row)
            }
            guard let user else { throw StoreError("the verified account is missing") }
            return (user, revoked)
        }
    }

    public func user(email: String) async throws -> UserRecord? {
        try await self.firstUser("SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email)")
    }

    public func user(id: UUID) async throws -> UserRecord? {
        try await self.firstUser("SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(id)")
    }

    public func updateUser(id: UUID, displayName: String?, emailNotifications: Bool?) async throws -> UserRecord? {
        try await self.firstUser(
            """
            UPDATE users SET
                display_name = COALESCE(\(displayName), display_name),
                email_notifications = COALESCE(\(emailNotifications), email_notifications),
                updated_at = now()
            WHERE id = \(id)
            RETURNING \(unescaped: Self.userColumns)
            """
        )
    }

    /// Users whose display name starts with `prefix` (case-insensitive), by name.
    public func searchUsers(displayNamePrefix prefix: String, limit: Int) async throws -> [UserRecord] {
        let pattern = Self.escapeLike(prefix.lowercased()) + "%"
        let rows = try await self.client.query(
            """
            SELECT \(unescaped: Self.userColumns) FROM users
            WHERE lower(display_name) LIKE \(pattern)
            ORDER BY lower(display_name), id
            LIMIT \(limit)
            """,
            logger: self.logger
        )
        var users: [UserRecord] = []
        for try await row in rows { users.append(try Self.user(row)) }
        return users
    }

    /// Escapes LIKE's wildcards so user input matches literally.
    static func escapeLike(_ text: String) -> String {
        var out = ""
        for ch in text {
            if ch == "\\" || ch == "%" || ch == "_" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    // MARK: sessions

    /// Starts a session with its first refresh token; returns the session id.
    public func createSession(userID: UUID, refreshHash: [UInt8], lifetime: Duration, userAgent: String?) async throws -> UUID {
        let sessionID = UUID.v7()
        let expiresAt = Date().addingTimeInterval(TimeInterval(lifetime.components.seconds))
        try await self.client.query(
            """
            WITH s AS (
                INSERT INTO sessions (id, user_id, expires_at, user_agent)
                VALUES (\(sessionID), \(userID), \(expiresAt), \(userAgent.map { String($0.prefix(256)) }))
                RETURNING id
            )
            INSERT INTO refresh_tokens (token_hash, session_id) SELECT \(ByteBuffer(bytes: refreshHash)), id FROM s
            """,
            logger: self.logger
        )
        return sessionID
    }

    /// Spends `presentedHash` and stores `newHash` as the session's token, in one
    /// transaction. A spent token revokes its session (reuse detection). Two
    /// parallel refreshes with the same token: one rotates, the other is a reuse.
    public func refresh(presentedHash: [UInt8], newHash: [UInt8]) async throws -> RefreshOutcome {
        try await self.client.transaction(logger: self.logger) { connection in
            var spentSession: UUID?
            for try await id in try await connection.query(
                "UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = \(ByteBuffer(bytes: presentedHash)) AND spent_at IS NULL RETURNING session_id",
                logger: self.logger
            ).decode(UUID.self) {
                spentSession = id
            }
            if let sessionID = spentSession {
                var user: UserRecord?
                for try await row in try await connection.query(
                    """
                    UPDATE sessions SET last_used_at = now()
                    WHERE id = \(sessionID) AND revoked_at IS NULL AND expires_at > now()
                    RETURNING user_id
                    """,
                    logger: self.logger
                ) {
                    let userID = try row.decode(UUID.self)
                    for try await userRow in try await connection.query(
                        "SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(userID)", logger: self.logger
                    ) {
                        user = try Self.user(userRow)
                    }
                }
                guard let user else { return .invalid }
                try await connection.query(
                    "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (\(ByteBuffer(bytes: newHash)), \(sessionID))", logger: self.logger
                )
                return .rotated(sessionID: sessionID, user: user)
            }
            // Not current: spent before (reuse), or unknown.
            for try await sessionID in try await connection.query(
                "SELECT session_id FROM refresh_tokens WHERE token_hash = \(ByteBuffer(bytes: presentedHash))", logger: self.logger
            ).decode(UUID.self) {
                try await connection.query(
                    """
                    UPDATE sessions SET revoked_at = now(), revoked_reason = 'token_reused'
                    WHERE id = \(sessionID) AND revoked_at IS NULL
                    """,
                    logger: self.logger
                )
                return .reused(sessionID: sessionID)
            }
            return .invalid
        }
    }

    /// Revokes the session a refresh token (current or spent) belongs to; its id, or nil for an unknown token.
    public func revokeSession(refreshHash: [UInt8], reason: String) async throws -> UUID? {
        let rows = try await self.client.query(
            """
            UPDATE sessions SET revoked_at = COALESCE(revoked_at, now()), revoked_reason = COALESCE(revoked_reason, \(reason))
            WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = \(ByteBuffer(bytes: refreshHash)))
            RETURNING id
            """,
            logger: self.logger
        )
        for try await id in rows.decode(UUID.self) { return id }
        return nil
    }

    /// Sessions revoked within the last `window`.
    public func revokedSessions(within window: Duration) async throws -> [UUID] {
        let rows = try await self.client.query(
            "SELECT id FROM sessions WHERE revoked_at > now() - make_interval(secs => \(Double(window.components.seconds)))", logger: self.logger
        )
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    /// Whether a session is revoked or gone (when the in-memory view is stale).
    public func isSessionRevoked(_ sessionID: UUID) async throws -> Bool {
        let rows = try await self.client.query(
            "SELECT revoked_at IS NOT NULL OR expires_at <= now() FROM sessions WHERE id = \(sessionID)", logger: self.logger
        )
        for try await revoked in rows.decode(Bool.self) { return revoked }
        return true
    }
}

/// A storage invariant that did not hold.
public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
