public import Foundation
public import Logging
import NIOCore
import PostgresNIO

/// Web Push subscriptions (migration 009) and what the push worker reads:
/// who gets a push for a new message, and whether it is still unread.
public struct PushStore: Sendable {
    /// PROTOCOL.md 1.1: at most 10 per user.
    public static let perUser = 10

    let database: Database
    let logger: Logger

    public init(database: Database, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    public enum SubscribeOutcome: Sendable, Equatable {
        case subscribed(UUID)
        /// The user has `perUser` subscriptions other than this endpoint.
        case tooMany
        /// The session is no longer valid (revoked while the request ran).
        case sessionGone
    }

    /// Adds a subscription for the user's session, or (an endpoint already
    /// known: the same browser subscribing again, or another account signing
    /// in there) moves it to them with the new keys, keeping its id.
    public func subscribe(userID: UUID, sessionID: UUID, endpoint: String, keys: WebPush.SubscriptionKeys) async throws -> SubscribeOutcome {
        let p256dh = ByteBuffer(bytes: keys.p256dh), auth = ByteBuffer(bytes: keys.auth)
        return try await self.database.transaction(logger: self.logger) { connection in
            // the user's row serializes their subscribes, so the count below
            // holds; the session's row (shared) keeps a logout from slipping in
            var live = false
            for try await _ in try await connection.query(
                """
                SELECT 1 FROM users u JOIN sessions s ON s.user_id = u.id AND s.id = \(sessionID) AND s.revoked_at IS NULL AND s.expires_at > now()
                WHERE u.id = \(userID) AND u.deleted_at IS NULL FOR UPDATE OF u FOR SHARE OF s
                """,
                logger: self.logger
            ) { live = true }
            guard live else { return .sessionGone }
            // subscriptions of sessions that expired (nothing revoked them) count no more
            try await connection.query(
                """
                DELETE FROM push_subscriptions p USING sessions s
                WHERE p.user_id = \(userID) AND s.id = p.session_id AND (s.revoked_at IS NOT NULL OR s.expires_at <= now())
                """,
                logger: self.logger
            )
            let others = try await connection.query(
                "SELECT count(*)::int FROM push_subscriptions WHERE user_id = \(userID) AND endpoint <> \(endpoint)", logger: self.logger
            ).collect().first?.decode(Int.self) ?? 0
            guard others < Self.perUser else { return .tooMany }
            let id = try await connection.query(
                """
                INSERT INTO push_subscriptions (id, user_id, session_id, endpoint, p256dh, auth)
                VALUES (\(UUID.v7()), \(userID), \(sessionID), \(endpoint), \(p256dh), \(auth))
                ON CONFLICT (endpoint) DO UPDATE SET user_id = EXCLUDED.user_id, session_id = EXCLUDED.session_id,
                    p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth
                RETURNING id
                """,
                logger: self.logger
            ).collect().first?.decode(UUID.self)
            guard let id else { throw StoreError("the subscription was not stored") }
            return .subscribed(id)
        }
    }

    /// The user's own subscription only; false when there is none.
    public func unsubscribe(_ id: UUID, userID: UUID) async throws -> Bool {
        try await self.database.query(
            "DELETE FROM push_subscriptions WHERE id = \(id) AND user_id = \(userID) RETURNING 1", logger: self.logger
        ).elements.isEmpty == false
    }

    /// A subscription the push service says is gone (404, 410).
    public func remove(_ id: UUID) async throws {
        try await self.database.query("DELETE FROM push_subscriptions WHERE id = \(id)", logger: self.logger)
    }

    public func count(of userID: UUID) async throws -> Int {
        try await self.database.query("SELECT count(*)::int FROM push_subscriptions WHERE user_id = \(userID)", logger: self.logger)
            .decode(Int.self).elements.first ?? 0
    }

    /// One subscription and its keys.
    public struct Subscription: Sendable, Hashable {
        public var id: UUID
        public var userID: UUID
        public var endpoint: String
        public var p256dh: Data
        public var auth: Data

        /// id, user_id, endpoint, p256dh, auth.
        typealias Row = (UUID, UUID, String, ByteBuffer, ByteBuffer)

        init(row: Row) {
            self.init(id: row.0, userID: row.1, endpoint: row.2, p256dh: Data(row.3.readableBytesView), auth: Data(row.4.readableBytesView))
        }

        public init(id: UUID, userID: UUID, endpoint: String, p256dh: Data, auth: Data) {
            self.id = id
            self.userID = userID
            self.endpoint = endpoint
            self.p256dh = p256dh
            self.auth = auth
        }
    }

    /// A push a new message calls for: to one subscription of a member.
    public struct Target: Sendable {
        public var subscription: Subscription
        public var chatID: UUID
        public var seq: Int64
        public var mentioned: Bool
        public var direct: Bool
        public var senderID: UUID
        public var senderName: String
        public var senderCreatedAt: Date
        /// The body's first 200 characters ("" for attachments only).
        public var preview: String

        public init(
            subscription: Subscription, chatID: UUID, seq: Int64, mentioned: Bool, direct: Bool, senderID: UUID, senderName: String,
            senderCreatedAt: Date, preview: String
        ) {
            self.subscription = subscription
            self.chatID = chatID
            self.seq = seq
            self.mentioned = mentioned
            self.direct = direct
            self.senderID = senderID
            self.senderName = senderName
            self.senderCreatedAt = senderCreatedAt
            self.preview = preview
        }
    }

    /// For each new message: every subscription of every member other than
    /// the sender whom it notifies (`parley_notifies`: their chat settings
    /// and whether it mentions them), who has not read it, of a live session.
    /// Deleted messages and deleted accounts get nothing. Whether the member
    /// has a socket open is Redis's to say (the caller checks).
    ///
    /// The join order is fixed by materialized steps, so that a planner with
    /// stale statistics (a group that grew since the last ANALYZE) cannot
    /// probe every message per member: the messages of the read first; then,
    /// once per chat rather than per message, its members who have a
    /// subscription at all (in a large group usually few or none); only
    /// those are matched with the messages, settings and sessions.
    public func targets(of messages: [MailStore.NewMessageRef]) async throws -> [Target] {
        guard !messages.isEmpty else { return [] }
        let chats = messages.map(\.chatID), seqs = messages.map(\.seq)
        return try await self.database.query(
            """
            WITH e AS MATERIALIZED (
                SELECT msg.chat_id, msg.seq, msg.sender_id, msg.mentions, left(coalesce(msg.body, ''), 200) AS preview
                FROM unnest(\(chats)::uuid[], \(seqs)::bigint[]) AS e(chat_id, seq)
                JOIN messages msg ON msg.chat_id = e.chat_id AND msg.seq = e.seq AND msg.deleted_at IS NULL
            ), subscribed AS MATERIALIZED (
                SELECT m.chat_id, m.user_id, m.last_read_seq, m.notify, m.muted_until FROM chat_members m
                WHERE m.chat_id IN (SELECT chat_id FROM e) AND EXISTS (SELECT 1 FROM push_subscriptions s WHERE s.user_id = m.user_id)
            )
            SELECT s.id, s.user_id, s.endpoint, s.p256dh, s.auth, e.chat_id, e.seq, m.user_id = ANY(e.mentions),
                   c.kind = 'direct', sender.id, sender.display_name, sender.created_at, e.preview
            FROM e
            JOIN subscribed m ON m.chat_id = e.chat_id AND m.user_id <> e.sender_id AND m.last_read_seq < e.seq
            JOIN chats c ON c.id = e.chat_id
            JOIN users sender ON sender.id = e.sender_id
            JOIN users u ON u.id = m.user_id AND u.deleted_at IS NULL
            JOIN push_subscriptions s ON s.user_id = m.user_id
            JOIN sessions ses ON ses.id = s.session_id AND ses.revoked_at IS NULL AND ses.expires_at > now()
            WHERE parley_notifies(m.notify, m.muted_until, m.user_id = ANY(e.mentions))
            ORDER BY e.chat_id, e.seq
            """,
            logger: self.logger
        ).decode((UUID, UUID, String, ByteBuffer, ByteBuffer, UUID, Int64, Bool, Bool, UUID, String, Date, String).self).elements.map {
            Target(
                subscription: Subscription(row: ($0.0, $0.1, $0.2, $0.3, $0.4)),
                chatID: $0.5, seq: $0.6, mentioned: $0.7, direct: $0.8, senderID: $0.9, senderName: $0.10, senderCreatedAt: $0.11, preview: $0.12
            )
        }
    }

    /// A subscription by id, if it still exists and its session is live.
    public func subscription(_ id: UUID) async throws -> Subscription? {
        try await self.database.query(
            """
            SELECT s.id, s.user_id, s.endpoint, s.p256dh, s.auth FROM push_subscriptions s
            JOIN sessions ses ON ses.id = s.session_id AND ses.revoked_at IS NULL AND ses.expires_at > now()
            WHERE s.id = \(id)
            """,
            logger: self.logger
        ).decode(Subscription.Row.self).elements.first.map(Subscription.init(row:))
    }

    /// The live subscriptions of a user (for a retraction).
    public func subscriptions(of userID: UUID) async throws -> [Subscription] {
        try await self.database.query(
            """
            SELECT s.id, s.user_id, s.endpoint, s.p256dh, s.auth FROM push_subscriptions s
            JOIN sessions ses ON ses.id = s.session_id AND ses.revoked_at IS NULL AND ses.expires_at > now()
            WHERE s.user_id = \(userID)
            """,
            logger: self.logger
        ).decode(Subscription.Row.self).elements.map(Subscription.init(row:))
    }

    /// Whether `userID` is a member who has not read `seq` of the chat (a
    /// push still due for it); false once read, or once they left.
    public func isUnread(chatID: UUID, seq: Int64, by userID: UUID) async throws -> Bool {
        try await self.database.query(
            "SELECT 1 FROM chat_members WHERE chat_id = \(chatID) AND user_id = \(userID) AND last_read_seq < \(seq)", logger: self.logger
        ).elements.isEmpty == false
    }
}
