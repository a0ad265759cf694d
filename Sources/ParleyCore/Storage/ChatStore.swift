public import Foundation
public import Logging
import NIOCore
import PostgresNIO

/// Chats, members, messages, receipts and attachments in PostgreSQL.
///
/// Ordering guarantee: a send (or a batch of sends) locks its chat rows
/// (`SELECT … FOR UPDATE`), so concurrent senders of one chat take seqs one
/// after another inside their own transactions: no gaps, no reuse. Idempotency: `(chat_id, sender_id,
/// client_id)` is unique and checked under the same lock.
public struct ChatStore: Sendable {
    let database: Database
    let logger: Logger
    public let maxGroupSize: Int
    /// Shared by the copies of this store (searches choose their plan with it).
    let searchStatistics = SearchStatistics()
    /// The reads of users' chats (every connect reads them twice), batched;
    /// shared by the copies of this store.
    let positionReads: CoalescedReads<UUID, [UUID: Int64]>

    public init(database: Database, logger: Logger, maxGroupSize: Int = 10_000) {
        self.database = database
        self.logger = logger
        self.maxGroupSize = maxGroupSize
        // batches of at most 100 users: a statement stays small, so a slow one
        // fails few connects (and counts once towards the database breaker)
        self.positionReads = CoalescedReads(maxInFlight: 2, maxBatch: 100, maxWait: database.deadline, missing: [:]) { users in
            try await Self.chatPositions(of: users, database: database, logger: logger)
        }
    }

    static let messageColumns = "m.id, m.chat_id, m.seq, m.sender_id, m.client_id, m.body, m.reply_to_seq, m.created_at, m.edited_at, m.deleted_at, m.mentions"

    static func message(_ row: PostgresRow) throws -> MessageRecord {
        let (id, chatID, seq, sender, clientID, body, reply, created, edited, deleted, mentions) = try row.decode(
            (UUID, UUID, Int64, UUID, UUID, String?, Int64?, Date, Date?, Date?, [UUID]).self
        )
        return MessageRecord(
            id: id, chatID: chatID, seq: seq, senderID: sender, clientID: clientID, body: body, attachments: [], replyToSeq: reply,
            createdAt: created, editedAt: edited, deletedAt: deleted, mentions: mentions
        )
    }

    // MARK: chats

    /// Throws `ChatError.blocked` if any of `users` blocked `actor`: a blocked
    /// user cannot open a direct chat with the blocker or add them to a group.
    static func refuseIfBlocked(by users: [UUID], of actor: UUID, on connection: PostgresConnection, logger: Logger) async throws {
        guard !users.isEmpty else { return }
        for try await _ in try await connection.query(
            "SELECT 1 FROM user_blocks WHERE blocked_id = \(actor) AND blocker_id = ANY(\(users)) LIMIT 1", logger: logger
        ) {
            throw ChatError.blocked
        }
    }

    /// The query that says whether `chatID` is a direct chat whose other
    /// member blocked `actor` (nothing reaches the blocker there from them).
    static func blockedInDirectChat(_ chatID: UUID, actor: UUID) -> PostgresQuery {
        """
        SELECT 1 FROM chats c
        JOIN chat_members pm ON pm.chat_id = c.id AND pm.user_id <> \(actor)
        JOIN user_blocks ub ON ub.blocker_id = pm.user_id AND ub.blocked_id = \(actor)
        WHERE c.id = \(chatID) AND c.kind = 'direct' LIMIT 1
        """
    }

    /// Whether the other member of direct chat `chatID` blocked `actor` (false for groups).
    public func isBlocked(inDirectChat chatID: UUID, actor: UUID) async throws -> Bool {
        !(try await self.database.query(Self.blockedInDirectChat(chatID, actor: actor), logger: self.logger).elements.isEmpty)
    }

    /// The direct chat of two users, created if needed; `created` tells which.
    public func directChat(between userID: UUID, and peerID: UUID) async throws -> (chat: ChatRecord, created: Bool) {
        guard userID != peerID else { throw ChatError.selfChat }
        let key = [userID.lowercased, peerID.lowercased].sorted().joined(separator: ":")
        let created: Bool = try await self.database.transaction(logger: self.logger) { connection in
            var peerExists = false
            for try await _ in try await connection.query("SELECT 1 FROM users WHERE id = \(peerID) AND deleted_at IS NULL", logger: self.logger) { peerExists = true }
            guard peerExists else { throw ChatError.userNotFound }
            try await Self.refuseIfBlocked(by: [peerID], of: userID, on: connection, logger: self.logger)
            let chatID = UUID.v7()
            var inserted = false
            for try await _ in try await connection.query(
                """
                INSERT INTO chats (id, kind, direct_key, members_count, created_by) VALUES (\(chatID), 'direct', \(key), 2, \(userID))
                ON CONFLICT (direct_key) DO NOTHING RETURNING id
                """,
                logger: self.logger
            ) {
                inserted = true
            }
            if inserted {
                try await connection.query(
                    "INSERT INTO chat_members (chat_id, user_id, role) VALUES (\(chatID), \(userID), 'member'), (\(chatID), \(peerID), 'member')",
                    logger: self.logger
                )
            }
            return inserted
        }
        guard let id = try await self.directChatID(key: key), let chat = try await self.chat(id, viewer: userID) else {
            throw ChatError.chatNotFound
        }
        return (chat, created)
    }

    private func directChatID(key: String) async throws -> UUID? {
        for try await id in try await self.database.query("SELECT id FROM chats WHERE direct_key = \(key)", logger: self.logger).decode(UUID.self) {
            return id
        }
        return nil
    }

    /// A group with the creator as owner and `memberIDs` as members.
    public func createGroup(creator: UUID, title: String, memberIDs: [UUID], isPublic: Bool) async throws -> ChatRecord {
        let others = Array(Set(memberIDs).subtracting([creator]))
        guard others.count + 1 <= self.maxGroupSize else { throw ChatError.groupFull }
        let chatID = UUID.v7()
        try await self.database.transaction(logger: self.logger) { connection in
            var found = 0
            for try await count in try await connection.query("SELECT count(*) FROM users WHERE id = ANY(\(others)) AND deleted_at IS NULL", logger: self.logger).decode(Int.self) {
                found = count
            }
            guard found == others.count else { throw ChatError.userNotFound }
            try await Self.refuseIfBlocked(by: others, of: creator, on: connection, logger: self.logger)
            try await connection.query(
                """
                INSERT INTO chats (id, kind, title, public, members_count, created_by)
                VALUES (\(chatID), 'group', \(title), \(isPublic), \(others.count + 1), \(creator))
                """,
                logger: self.logger
            )
            try await connection.query(
                """
                INSERT INTO chat_members (chat_id, user_id, role, joined_at)
                SELECT \(chatID), \(creator), 'owner', clock_timestamp()
                UNION ALL
                SELECT \(chatID), u, 'member', clock_timestamp() FROM unnest(\(others)::uuid[]) AS u
                """,
                logger: self.logger
            )
        }
        guard let chat = try await self.chat(chatID, viewer: creator) else { throw ChatError.chatNotFound }
        return chat
    }

    /// A chat as `viewer` (an SQL expression: `$1`, or a column when one
    /// query reads a chat for many viewers) sees it, from `chats c` (or
    /// `from`, which must name `c`); the viewer's membership is joined as
    /// `me` by the caller. The last column is the viewer.
    static func chatSelect(viewer: String = "$1", from: String = "chats c") -> String {
        """
        SELECT c.id, c.kind, c.title, c.public, c.created_at, c.activity_at, c.last_seq, c.members_count,
               COALESCE(me.last_read_seq, 0), me.muted_until, COALESCE(me.notify, 'all'),
               m.id, m.chat_id, m.seq, m.sender_id, m.client_id, m.body, m.reply_to_seq, m.created_at, m.edited_at, m.deleted_at, m.mentions,
               p.id, p.email, p.email_verified, p.display_name, p.password_hash, p.email_notifications, p.created_at, \(viewer)::uuid
        FROM \(from)
        LEFT JOIN messages m ON m.chat_id = c.id AND m.seq = c.last_seq
        LEFT JOIN LATERAL (
            SELECT u.* FROM chat_members pm JOIN users u ON u.id = pm.user_id
            WHERE c.kind = 'direct' AND pm.chat_id = c.id AND pm.user_id <> \(viewer)
            LIMIT 1
        ) p ON true
        """
    }

    /// Decodes one row of `chatSelect` (the viewer's membership joined as `me`).
    static func chat(_ row: PostgresRow) throws -> ChatRecord {
        try Self.viewedChat(row).chat
    }

    /// One row of `chatSelect`: the chat and whose view of it that is.
    static func viewedChat(_ row: PostgresRow) throws -> (chat: ChatRecord, viewer: UUID) {
        let (id, kind, title, isPublic, created, activity, lastSeq, membersCount, lastRead, mutedUntil, notify,
             mID, mChat, mSeq, mSender, mClient, mBody, mReply, mCreated, mEdited, mDeleted, mMentions,
             pID, pEmail, pVerified, pName, pHash, pNotify, pCreated, viewer) = try row.decode(
            (UUID, String, String?, Bool, Date, Date, Int64, Int, Int64, Date?, String,
             UUID?, UUID?, Int64?, UUID?, UUID?, String?, Int64?, Date?, Date?, Date?, [UUID]?,
             UUID?, String?, Bool?, String?, String?, Bool?, Date?, UUID).self
        )
        var lastMessage: MessageRecord?
        if let mID, let mChat, let mSeq, let mSender, let mClient, let mCreated {
            lastMessage = MessageRecord(
                id: mID, chatID: mChat, seq: mSeq, senderID: mSender, clientID: mClient, body: mBody, attachments: [], replyToSeq: mReply,
                createdAt: mCreated, editedAt: mEdited, deletedAt: mDeleted, mentions: mMentions ?? []
            )
        }
        var peer: UserRecord?
        if let pID, let pEmail, let pVerified, let pName, let pNotify, let pCreated {
            peer = UserRecord(id: pID, email: pEmail, emailVerified: pVerified, displayName: pName, passwordHash: pHash, emailNotifications: pNotify, createdAt: pCreated)
        }
        let chat = ChatRecord(
            id: id, kind: ChatKind(rawValue: kind) ?? .group, title: title, isPublic: isPublic, createdAt: created, activityAt: activity,
            lastSeq: lastSeq, membersCount: membersCount, lastReadSeq: lastRead, lastMessage: lastMessage, peer: peer,
            settings: ChatSettings(mutedUntil: mutedUntil, notify: NotifyLevel(rawValue: notify) ?? .all)
        )
        return (chat, viewer)
    }

    /// A chat as `viewer` sees it: nil unless the viewer is a member or the group is public.
    public func chat(_ chatID: UUID, viewer: UUID) async throws -> ChatRecord? {
        let rows = try await self.database.query(
            PostgresQuery(
                unsafeSQL: Self.chatSelect() + """
                     LEFT JOIN chat_members me ON me.chat_id = c.id AND me.user_id = $1
                    WHERE c.id = $2 AND (me.user_id IS NOT NULL OR (c.kind = 'group' AND c.public))
                    """,
                binds: Self.binds(viewer, chatID)
            ),
            logger: self.logger
        )
        var chats: [ChatRecord] = []
        for try await row in rows { chats.append(try Self.chat(row)) }
        return try await self.withLastMessageAttachments(chats).first
    }

    /// One chat as each of `viewers` sees it, in one query (a change of the
    /// chat told to all of its sockets on a gateway): the viewers who may
    /// see it (members, or anyone for a public group) → their view.
    public func chat(_ chatID: UUID, viewers: Set<UUID>) async throws -> [UUID: ChatRecord] {
        guard !viewers.isEmpty else { return [:] }
        var binds = Self.binds(chatID)
        binds.append(Array(viewers))
        let rows = try await self.database.query(
            PostgresQuery(
                unsafeSQL: Self.chatSelect(viewer: "v.id", from: "unnest($2::uuid[]) AS v(id) CROSS JOIN chats c") + """
                     LEFT JOIN chat_members me ON me.chat_id = c.id AND me.user_id = v.id
                    WHERE c.id = $1 AND (me.user_id IS NOT NULL OR (c.kind = 'group' AND c.public))
                    """,
                binds: binds
            ),
            logger: self.logger
        )
        var views: [(chat: ChatRecord, viewer: UUID)] = []
        for try await row in rows { views.append(try Self.viewedChat(row)) }
        let chats = try await self.withLastMessageAttachments(views.map(\.chat))
        return Dictionary(zip(views.map(\.viewer), chats)) { first, _ in first }
    }

    /// The viewer's chats, most recent activity first, keyset-paginated on (activity_at, id).
    public func chats(of viewer: UUID, limit: Int, after cursor: (activityAt: Date, id: UUID)?) async throws -> (chats: [ChatRecord], hasMore: Bool) {
        var binds = Self.binds(viewer)
        var condition = ""
        if let cursor {
            binds.append(cursor.activityAt)
            binds.append(cursor.id)
            condition = "AND (c.activity_at, c.id) < ($2, $3)"
        }
        binds.append(limit + 1)
        let rows = try await self.database.query(
            PostgresQuery(
                unsafeSQL: Self.chatSelect() + """
                     JOIN chat_members me ON me.chat_id = c.id AND me.user_id = $1
                    WHERE true \(condition)
                    ORDER BY c.activity_at DESC, c.id DESC
                    LIMIT $\(binds.count)
                    """,
                binds: binds
            ),
            logger: self.logger
        )
        var chats: [ChatRecord] = []
        for try await row in rows { chats.append(try Self.chat(row)) }
        let hasMore = chats.count > limit
        return (try await self.withLastMessageAttachments(Array(chats.prefix(limit))), hasMore)
    }

    private func withLastMessageAttachments(_ chats: [ChatRecord]) async throws -> [ChatRecord] {
        let keys = chats.compactMap(\.lastMessage).map { ($0.chatID, $0.seq) }
        let attachments = try await self.attachments(of: keys)
        return chats.map { chat in
            var chat = chat
            if let message = chat.lastMessage, !message.isDeleted { chat.lastMessage?.attachments = attachments[Key(message.chatID, message.seq)] ?? [] }
            return chat
        }
    }

    struct Key: Hashable {
        let chat: UUID
        let seq: Int64
        init(_ chat: UUID, _ seq: Int64) {
            self.chat = chat
            self.seq = seq
        }
    }

    /// Attachments of many messages in one query.
    func attachments(of messages: [(UUID, Int64)]) async throws -> [Key: [AttachmentRef]] {
        guard !messages.isEmpty else { return [:] }
        return try await Self.attachments(from: self.database.query(Self.attachmentsQuery(messages), logger: self.logger))
    }

    private static func attachmentsQuery(_ messages: [(UUID, Int64)]) -> PostgresQuery {
        """
        SELECT ma.chat_id, ma.seq, a.id, a.content_type, a.size
        FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
        WHERE (ma.chat_id, ma.seq) IN (SELECT * FROM unnest(\(messages.map(\.0))::uuid[], \(messages.map(\.1))::bigint[]))
        ORDER BY ma.chat_id, ma.seq, ma.position
        """
    }

    private static func attachments<Rows: AsyncSequence>(from rows: Rows) async throws -> [Key: [AttachmentRef]] where Rows.Element == PostgresRow {
        var result: [Key: [AttachmentRef]] = [:]
        for try await row in rows {
            let (chat, seq, id, type, size) = try row.decode((UUID, Int64, UUID, String, Int).self)
            result[Key(chat, seq), default: []].append(AttachmentRef(id: id, contentType: type, size: size))
        }
        return result
    }

    static func binds(_ values: UUID...) -> PostgresBindings {
        var binds = PostgresBindings()
        for value in values { binds.append(value) }
        return binds
    }

    public func members(of chatID: UUID) async throws -> [MemberRecord] {
        let rows = try await self.database.query(
            """
            SELECT \(unescaped: AccountStore.userColumns(of: "u")),
                   cm.role, cm.joined_at, cm.last_read_seq
            FROM chat_members cm JOIN users u ON u.id = cm.user_id
            WHERE cm.chat_id = \(chatID)
            ORDER BY cm.joined_at, u.id
            """,
            logger: self.logger
        )
        var members: [MemberRecord] = []
        for try await row in rows {
            let (id, email, verified, name, hash, notify, created, role, joined, lastRead) = try row.decode(
                (UUID, String, Bool, String, String?, Bool, Date, String, Date, Int64).self
            )
            let user = UserRecord(id: id, email: email, emailVerified: verified, displayName: name, passwordHash: hash, emailNotifications: notify, createdAt: created)
            members.append(MemberRecord(user: user, role: MemberRole(rawValue: role) ?? .member, joinedAt: joined, lastReadSeq: lastRead))
        }
        return members
    }

    /// The ids of a chat's members (for fan-out).
    public func memberIDs(of chatID: UUID) async throws -> [UUID] {
        var ids: [UUID] = []
        for try await id in try await self.database.query("SELECT user_id FROM chat_members WHERE chat_id = \(chatID)", logger: self.logger).decode(UUID.self) {
            ids.append(id)
        }
        return ids
    }

    /// The viewer's role, or nil when not a member.
    public func role(of userID: UUID, in chatID: UUID) async throws -> MemberRole? {
        for try await role in try await self.database.query(
            "SELECT role FROM chat_members WHERE chat_id = \(chatID) AND user_id = \(userID)", logger: self.logger
        ).decode(String.self) {
            return MemberRole(rawValue: role)
        }
        return nil
    }

    /// Changes the member's own notification settings for the chat: `notify`
    /// when given; `mutedUntil` when given (`.some(nil)` unmutes). Returns
    /// them as stored. Members only.
    public func updateSettings(chatID: UUID, userID: UUID, mutedUntil: Date??, notify: NotifyLevel?) async throws -> ChatSettings {
        let setMuted = mutedUntil != nil
        let muted: Date? = mutedUntil ?? nil
        for try await (until, level) in try await self.database.query(
            """
            UPDATE chat_members SET
                notify = COALESCE(\(notify?.rawValue), notify),
                muted_until = CASE WHEN \(setMuted) THEN \(muted) ELSE muted_until END
            WHERE chat_id = \(chatID) AND user_id = \(userID)
            RETURNING muted_until, notify
            """,
            logger: self.logger
        ).decode((Date?, String).self) {
            return ChatSettings(mutedUntil: until, notify: NotifyLevel(rawValue: level) ?? .all)
        }
        throw ChatError.chatNotFound
    }

    /// Changes title and/or visibility (owner or admin of a group).
    public func updateGroup(_ chatID: UUID, actor: UUID, title: String?, isPublic: Bool?) async throws {
        let (kind, role) = try await self.kindAndRole(chatID, actor)
        guard kind == .group else { throw ChatError.notAGroup }
        guard role.canManage else { throw ChatError.notAllowed("only the owner or an admin can change the chat") }
        try await self.database.query(
            """
            UPDATE chats SET title = COALESCE(\(title), title), public = COALESCE(\(isPublic), public), updated_at = now()
            WHERE id = \(chatID)
            """,
            logger: self.logger
        )
    }

    /// (kind, role of user) for a chat the user belongs to; chatNotFound otherwise.
    private func kindAndRole(_ chatID: UUID, _ userID: UUID) async throws -> (ChatKind, MemberRole) {
        for try await (kind, role) in try await self.database.query(
            "SELECT c.kind, m.role FROM chats c JOIN chat_members m ON m.chat_id = c.id AND m.user_id = \(userID) WHERE c.id = \(chatID)",
            logger: self.logger
        ).decode((String, String).self) {
            return (ChatKind(rawValue: kind) ?? .group, MemberRole(rawValue: role) ?? .member)
        }
        throw ChatError.chatNotFound
    }

    /// Adds `userID` to a group. Owners and admins add anyone (only the owner
    /// adds admins); anyone may add themselves to a public group, as a member.
    /// Returns the member and whether it is new.
    public func addMember(_ chatID: UUID, actor: UUID, userID: UUID, role: MemberRole) async throws -> (member: MemberRecord, added: Bool, lastSeq: Int64) {
        let (added, lastSeq): (Bool, Int64) = try await self.database.transaction(logger: self.logger) { connection in
            var chat: (kind: String, isPublic: Bool, count: Int, lastSeq: Int64)?
            for try await row in try await connection.query(
                "SELECT kind, public, members_count, last_seq FROM chats WHERE id = \(chatID) FOR UPDATE", logger: self.logger
            ).decode((String, Bool, Int, Int64).self) {
                chat = (row.0, row.1, row.2, row.3)
            }
            var actorRole: MemberRole?
            for try await r in try await connection.query(
                "SELECT role FROM chat_members WHERE chat_id = \(chatID) AND user_id = \(actor)", logger: self.logger
            ).decode(String.self) {
                actorRole = MemberRole(rawValue: r)
            }
            guard let chat, actorRole != nil || (chat.kind == "group" && chat.isPublic) else { throw ChatError.chatNotFound }
            guard chat.kind == "group" else { throw ChatError.notAGroup }
            if actor == userID && actorRole == nil {
                guard chat.isPublic, role == .member else { throw ChatError.notAllowed("you can only join a public group as a member") }
            } else {
                guard let actorRole, actorRole.canManage else { throw ChatError.notAllowed("only the owner or an admin can add members") }
                guard role != .owner, role == .member || actorRole == .owner else { throw ChatError.notAllowed("only the owner can add admins") }
            }
            var exists = false
            for try await _ in try await connection.query("SELECT 1 FROM users WHERE id = \(userID) AND deleted_at IS NULL", logger: self.logger) { exists = true }
            guard exists else { throw ChatError.userNotFound }
            if actor != userID { try await Self.refuseIfBlocked(by: [userID], of: actor, on: connection, logger: self.logger) }
            var inserted = false
            for try await _ in try await connection.query(
                """
                INSERT INTO chat_members (chat_id, user_id, role) VALUES (\(chatID), \(userID), \(role.rawValue))
                ON CONFLICT (chat_id, user_id) DO NOTHING RETURNING 1
                """,
                logger: self.logger
            ) {
                inserted = true
            }
            if inserted {
                guard chat.count < self.maxGroupSize else { throw ChatError.groupFull }
                try await connection.query("UPDATE chats SET members_count = members_count + 1, updated_at = now() WHERE id = \(chatID)", logger: self.logger)
            }
            // the chat row is locked: no message can commit between this and the join
            return (inserted, chat.lastSeq)
        }
        guard let member = try await self.members(of: chatID).first(where: { $0.user.id == userID }) else { throw ChatError.userNotFound }
        return (member, added, lastSeq)
    }

    /// Removes a member: yourself (leave), or someone else as owner/admin
    /// (nobody removes the owner). When the owner leaves, the oldest admin
    /// (else the oldest member) becomes owner. Returns the new owner, if any.
    @discardableResult
    public func removeMember(_ chatID: UUID, actor: UUID, userID: UUID) async throws -> UUID? {
        try await self.database.transaction(logger: self.logger) { connection in
            var kind: String?
            for try await k in try await connection.query("SELECT kind FROM chats WHERE id = \(chatID) FOR UPDATE", logger: self.logger).decode(String.self) {
                kind = k
            }
            var roles: [UUID: MemberRole] = [:]
            for try await (user, role) in try await connection.query(
                "SELECT user_id, role FROM chat_members WHERE chat_id = \(chatID) AND user_id IN (\(actor), \(userID))", logger: self.logger
            ).decode((UUID, String).self) {
                roles[user] = MemberRole(rawValue: role)
            }
            guard kind != nil, let actorRole = roles[actor] else { throw ChatError.chatNotFound }
            guard kind == "group" else { throw ChatError.notAGroup }
            guard let targetRole = roles[userID] else { throw ChatError.userNotFound }
            if actor != userID {
                guard actorRole.canManage else { throw ChatError.notAllowed("only the owner or an admin can remove members") }
                guard targetRole != .owner else { throw ChatError.notAllowed("nobody can remove the owner") }
            }
            return try await Self.leave(chatID, userID: userID, wasOwner: targetRole == .owner, on: connection, logger: self.logger)
        }
    }

    /// Removes a member of a group inside a transaction that locked the chat
    /// row; when the owner leaves, the oldest admin (else the oldest member)
    /// becomes owner. Returns the new owner, if any.
    static func leave(_ chatID: UUID, userID: UUID, wasOwner: Bool, on connection: PostgresConnection, logger: Logger) async throws -> UUID? {
        try await connection.query("DELETE FROM chat_members WHERE chat_id = \(chatID) AND user_id = \(userID)", logger: logger)
        try await connection.query("UPDATE chats SET members_count = members_count - 1, updated_at = now() WHERE id = \(chatID)", logger: logger)
        guard wasOwner else { return nil }
        var newOwner: UUID?
        for try await id in try await connection.query(
            """
            UPDATE chat_members SET role = 'owner'
            WHERE chat_id = \(chatID) AND user_id = (
                SELECT user_id FROM chat_members WHERE chat_id = \(chatID)
                ORDER BY (role = 'admin') DESC, joined_at, user_id LIMIT 1
            )
            RETURNING user_id
            """,
            logger: logger
        ).decode(UUID.self) {
            newOwner = id
        }
        return newOwner
    }
}
