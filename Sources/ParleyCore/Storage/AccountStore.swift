public import Foundation
public import Logging
import PostgresNIO
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
    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    /// Throws `DatabaseUnavailable` at once while PostgreSQL is known to be
    /// down, so that callers skip expensive work (hashing a password) first.
    public func requireAvailable() throws {
        try self.database.health.failIfOpen()
    }

    static let userColumns = "id, email, email_verified, display_name, password_hash, email_notifications, created_at"

    /// `userColumns` of a table known in a query as `alias`.
    static func userColumns(of alias: String) -> String {
        Self.userColumns.split(separator: ",").map { "\(alias)." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")
    }

    static func user(_ row: PostgresRow) throws -> UserRecord {
        let (id, email, verified, name, hash, notifications, created) = try row.decode(
            (UUID, String, Bool, String, String?, Bool, Date).self
        )
        return UserRecord(id: id, email: email, emailVerified: verified, displayName: name, passwordHash: hash, emailNotifications: notifications, createdAt: created)
    }

    private func firstUser(_ query: PostgresQuery) async throws -> UserRecord? {
        let rows = try await self.database.query(query, logger: self.logger)
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

    /// The account of a verified email, created on first use. Proving an
    /// address that someone registered without proving it takes the address
    /// away from them: their account is deleted (`delete`: sessions revoked,
    /// password gone, chats left) and the owner gets a new account of their
    /// own, which inherits nothing.
    /// `created`: the account is new (first use, or the owner's after a takeover).
    public func upsertVerifiedUser(email: String, displayName: String) async throws -> (user: UserRecord, takenOver: AccountDeletion?, created: Bool) {
        try await self.database.transaction(logger: self.logger) { connection in
            // Insert first: if a registration of this email is in flight, the insert
            // waits for it and then does nothing, and the next statement (a new
            // snapshot) sees that row, so it cannot slip past the takeover below.
            var created = try await Self.insertVerified(email: email, displayName: displayName, on: connection, logger: self.logger)
            var existing: (id: UUID, verified: Bool)?
            for try await row in try await connection.query(
                "SELECT id, email_verified FROM users WHERE email = \(email) FOR UPDATE", logger: self.logger
            ).decode((UUID, Bool).self) {
                existing = (row.0, row.1)
            }
            guard let existing else { throw StoreError("the verified account is missing") }
            var takenOver: AccountDeletion?
            if !existing.verified {
                takenOver = try await Self.delete(existing.id, reason: "taken_over", on: connection, logger: self.logger)
                created = try await Self.insertVerified(email: email, displayName: displayName, on: connection, logger: self.logger)
            }
            var user: UserRecord?
            for try await row in try await connection.query(
                "SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email)", logger: self.logger
            ) {
                user = try Self.user(row)
            }
            guard let user else { throw StoreError("the verified account is missing") }
            return (user, takenOver, created)
        }
    }

    /// True when it inserted (the address had no account).
    private static func insertVerified(email: String, displayName: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        try await connection.query(
            """
            INSERT INTO users (id, email, display_name, email_verified) VALUES (\(UUID.v7()), \(email), \(displayName), true)
            ON CONFLICT (email) DO NOTHING RETURNING 1
            """,
            logger: logger
        ).collect().isEmpty == false
    }

    /// Marks a user's own address as proven (they are signed in and showed a code sent to it).
    public func markEmailVerified(_ userID: UUID) async throws -> UserRecord? {
        try await self.firstUser(
            """
            UPDATE users SET email_verified = true, updated_at = now() WHERE id = \(userID) AND deleted_at IS NULL
            RETURNING \(unescaped: Self.userColumns)
            """
        )
    }

    // MARK: deletion

    /// What deleting an account changed, for announcing it.
    public struct AccountDeletion: Sendable {
        public var userID: UUID
        public var revokedSessions: [UUID] = []
        /// Groups the account left, with their new owner when it owned them.
        public var leftGroups: [(chatID: UUID, newOwner: UUID?)] = []
    }

    /// Deletes an account. Its row stays, so that its messages keep a
    /// sender: its sessions are revoked, its password, name and address are
    /// gone (the address is free for a new account), it leaves its groups
    /// (ownership passes on) and stays in its direct chats as a deleted
    /// user, its messages become tombstones and its uploads are removed.
    /// Nil when there is no such (undeleted) account.
    public func deleteAccount(_ userID: UUID, reason: String) async throws -> AccountDeletion? {
        try await self.database.transaction(logger: self.logger) { connection in
            var exists = false
            for try await _ in try await connection.query(
                "SELECT 1 FROM users WHERE id = \(userID) AND deleted_at IS NULL FOR UPDATE", logger: self.logger
            ) {
                exists = true
            }
            guard exists else { return nil }
            return try await Self.delete(userID, reason: reason, on: connection, logger: self.logger)
        }
    }

    static func delete(_ userID: UUID, reason: String, on connection: PostgresConnection, logger: Logger) async throws -> AccountDeletion {
        var deletion = AccountDeletion(userID: userID)
        for try await id in try await connection.query(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = \(reason) WHERE user_id = \(userID) AND revoked_at IS NULL RETURNING id",
            logger: logger
        ).decode(UUID.self) {
            deletion.revokedSessions.append(id)
        }
        // the groups, locked in id order as sends lock them
        var groups: [(UUID, Bool)] = []
        for try await (chatID, role) in try await connection.query(
            """
            SELECT c.id, m.role FROM chat_members m JOIN chats c ON c.id = m.chat_id
            WHERE m.user_id = \(userID) AND c.kind = 'group' ORDER BY c.id FOR UPDATE OF c
            """,
            logger: logger
        ).decode((UUID, String).self) {
            groups.append((chatID, role == "owner"))
        }
        for (chatID, wasOwner) in groups {
            deletion.leftGroups.append((chatID, try await ChatStore.leave(chatID, userID: userID, wasOwner: wasOwner, on: connection, logger: logger)))
        }
        try await connection.query(
            """
            DELETE FROM message_attachments ma USING messages m
            WHERE m.sender_id = \(userID) AND ma.chat_id = m.chat_id AND ma.seq = m.seq
            """,
            logger: logger
        )
        // tombstones first: their row locks make a concurrent edit of, or reaction to,
        // these messages wait and then see them deleted, so nothing is left behind
        try await connection.query(
            "UPDATE messages SET body = NULL, deleted_at = now() WHERE sender_id = \(userID) AND deleted_at IS NULL", logger: logger
        )
        try await connection.query(
            "DELETE FROM message_edits e USING messages m WHERE m.sender_id = \(userID) AND e.chat_id = m.chat_id AND e.seq = m.seq", logger: logger
        )
        try await connection.query("DELETE FROM user_blocks WHERE blocker_id = \(userID) OR blocked_id = \(userID)", logger: logger)
        // its reactions, and those on its messages (tombstones have none)
        try await connection.query("DELETE FROM message_reactions WHERE user_id = \(userID)", logger: logger)
        try await connection.query(
            "DELETE FROM message_reactions r USING messages m WHERE m.sender_id = \(userID) AND r.chat_id = m.chat_id AND r.seq = m.seq", logger: logger
        )
        try await connection.query("DELETE FROM attachments WHERE owner_id = \(userID)", logger: logger)
        try await connection.query("DELETE FROM mail_digests WHERE user_id = \(userID)", logger: logger)
        try await connection.query(
            """
            UPDATE users SET email = 'deleted+' || id || '@deleted.invalid', email_verified = false, password_hash = NULL,
                display_name = 'Deleted user', email_notifications = false, deleted_at = now(), updated_at = now()
            WHERE id = \(userID)
            """,
            logger: logger
        )
        return deletion
    }

    public func user(email: String) async throws -> UserRecord? {
        try await self.firstUser("SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email) AND deleted_at IS NULL")
    }

    /// The account of an email its owner proved (what an exact-email search may find).
    public func verifiedUser(email: String) async throws -> UserRecord? {
        try await self.firstUser("SELECT \(unescaped: Self.userColumns) FROM users WHERE email = \(email) AND email_verified AND deleted_at IS NULL")
    }

    /// A user that exists (deleted accounts do not).
    public func user(id: UUID) async throws -> UserRecord? {
        try await self.firstUser("SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(id) AND deleted_at IS NULL")
    }

    public func updateUser(id: UUID, displayName: String?, emailNotifications: Bool?) async throws -> UserRecord? {
        try await self.firstUser(
            """
            UPDATE users SET
                display_name = COALESCE(\(displayName), display_name),
                email_notifications = COALESCE(\(emailNotifications), email_notifications),
                updated_at = now()
            WHERE id = \(id) AND deleted_at IS NULL
            RETURNING \(unescaped: Self.userColumns)
            """
        )
    }

    /// Users whose display name starts with `prefix` (case-insensitive), by name.
    public func searchUsers(displayNamePrefix prefix: String, limit: Int) async throws -> [UserRecord] {
        let pattern = Self.escapeLike(prefix.lowercased()) + "%"
        let rows = try await self.database.query(
            """
            SELECT \(unescaped: Self.userColumns) FROM users
            WHERE lower(display_name) LIKE \(pattern) AND deleted_at IS NULL
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
        try await self.database.query(
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

    /// Spends `presentedHash` and stores `successorHash` as the session's
    /// token, in one transaction. A spent token revokes its session (reuse
    /// detection), except within `retryWindow` of its rotation while its
    /// successor is still unspent: that is a client retrying a refresh whose
    /// answer it lost, and it gets the same successor (the caller derives it
    /// from the presented token). Two parallel refreshes with one token thus
    /// both get the same successor.
    public func refresh(presentedHash: [UInt8], successorHash: [UInt8], retryWindow: Duration) async throws -> RefreshOutcome {
        try await self.database.transaction(logger: self.logger) { connection in
            var spentSession: UUID?
            for try await id in try await connection.query(
                "UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = \(ByteBuffer(bytes: presentedHash)) AND spent_at IS NULL RETURNING session_id",
                logger: self.logger
            ).decode(UUID.self) {
                spentSession = id
            }
            if let sessionID = spentSession {
                guard let user = try await self.touchSession(sessionID, on: connection) else { return .invalid }
                try await connection.query(
                    "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (\(ByteBuffer(bytes: successorHash)), \(sessionID))", logger: self.logger
                )
                return .rotated(sessionID: sessionID, user: user)
            }
            // Not current: spent before (a retry, or reuse), or unknown.
            for try await (sessionID, retried) in try await connection.query(
                """
                SELECT t.session_id,
                       t.spent_at > now() - make_interval(secs => \(Double(retryWindow.milliseconds) / 1000))
                       AND EXISTS (SELECT 1 FROM refresh_tokens n
                                   WHERE n.token_hash = \(ByteBuffer(bytes: successorHash)) AND n.session_id = t.session_id AND n.spent_at IS NULL)
                FROM refresh_tokens t WHERE t.token_hash = \(ByteBuffer(bytes: presentedHash))
                """,
                logger: self.logger
            ).decode((UUID, Bool).self) {
                if retried {
                    guard let user = try await self.touchSession(sessionID, on: connection) else { return .invalid }
                    return .rotated(sessionID: sessionID, user: user)
                }
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

    /// Marks a working session used; its user, or nil when the session is revoked or expired.
    private func touchSession(_ sessionID: UUID, on connection: PostgresConnection) async throws -> UserRecord? {
        for try await row in try await connection.query(
            """
            UPDATE sessions s SET last_used_at = now() FROM users u
            WHERE s.id = \(sessionID) AND s.revoked_at IS NULL AND s.expires_at > now() AND u.id = s.user_id AND u.deleted_at IS NULL
            RETURNING \(unescaped: Self.userColumns(of: "u"))
            """,
            logger: self.logger
        ) {
            return try Self.user(row)
        }
        return nil
    }

    /// A user's sessions that still work (not revoked, not expired), newest first.
    public func sessions(of userID: UUID) async throws -> [SessionRecord] {
        var sessions: [SessionRecord] = []
        for try await (id, created, used, agent) in try await self.database.query(
            """
            SELECT id, created_at, last_used_at, user_agent FROM sessions
            WHERE user_id = \(userID) AND revoked_at IS NULL AND expires_at > now()
            ORDER BY created_at DESC, id DESC
            """,
            logger: self.logger
        ).decode((UUID, Date, Date, String?).self) {
            sessions.append(SessionRecord(id: id, createdAt: created, lastUsedAt: used, userAgent: agent))
        }
        return sessions
    }

    /// Revokes one of a user's sessions; false when the user has no such working session.
    public func revokeSession(_ sessionID: UUID, of userID: UUID) async throws -> Bool {
        for try await _ in try await self.database.query(
            """
            UPDATE sessions SET revoked_at = now(), revoked_reason = 'revoked'
            WHERE id = \(sessionID) AND user_id = \(userID) AND revoked_at IS NULL AND expires_at > now()
            RETURNING id
            """,
            logger: self.logger
        ) {
            return true
        }
        return false
    }

    /// Revokes the session a refresh token (current or spent) belongs to; its id, or nil for an unknown token.
    public func revokeSession(refreshHash: [UInt8], reason: String) async throws -> UUID? {
        let rows = try await self.database.query(
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
        let rows = try await self.database.query(
            "SELECT id FROM sessions WHERE revoked_at > now() - make_interval(secs => \(Double(window.components.seconds)))", logger: self.logger
        )
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    /// Whether a session is revoked or gone (when the in-memory view is stale).
    public func isSessionRevoked(_ sessionID: UUID) async throws -> Bool {
        let rows = try await self.database.query(
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

/// A login session, as its user sees it.
public struct SessionRecord: Sendable, Hashable {
    public var id: UUID
    public var createdAt: Date
    public var lastUsedAt: Date
    public var userAgent: String?
}

extension AccountStore {
    // MARK: blocks

    /// `blocker` blocks `blocked` (a no-op if it did already); false if there
    /// is no such user.
    public func block(_ blocked: UUID, by blocker: UUID) async throws -> Bool {
        let rows = try await self.database.query(
            """
            INSERT INTO user_blocks (blocker_id, blocked_id)
            SELECT \(blocker), u.id FROM users u WHERE u.id = \(blocked) AND u.deleted_at IS NULL
            ON CONFLICT DO NOTHING
            RETURNING 1
            """,
            logger: self.logger
        )
        if !rows.elements.isEmpty { return true }
        // already blocked, or no such user
        return try await self.user(id: blocked) != nil
    }

    public func unblock(_ blocked: UUID, by blocker: UUID) async throws {
        try await self.database.query("DELETE FROM user_blocks WHERE blocker_id = \(blocker) AND blocked_id = \(blocked)", logger: self.logger)
    }

    /// The users `blocker` blocked, most recent first.
    public func blocks(of blocker: UUID) async throws -> [UserRecord] {
        let rows = try await self.database.query(
            """
            SELECT \(unescaped: Self.userColumns) FROM (
                SELECT u.*, b.created_at AS blocked_at FROM user_blocks b JOIN users u ON u.id = b.blocked_id
                WHERE b.blocker_id = \(blocker) AND u.deleted_at IS NULL
            ) x ORDER BY blocked_at DESC, id LIMIT 1000
            """,
            logger: self.logger
        )
        return try rows.elements.map(Self.user)
    }
}
