public import Foundation

public enum ChatKind: String, Sendable, Hashable {
    case direct, group
}

public enum MemberRole: String, Sendable, Hashable, Comparable {
    case owner, admin, member

    var rank: Int {
        switch self {
        case .owner: return 2
        case .admin: return 1
        case .member: return 0
        }
    }

    public static func < (a: MemberRole, b: MemberRole) -> Bool { a.rank < b.rank }

    /// Owners and admins manage members and the chat.
    public var canManage: Bool { self != .member }
}

public struct AttachmentRef: Sendable, Hashable {
    public var id: UUID
    public var contentType: String
    public var size: Int
}

/// One emoji on a message: how many members put it there, and whether the
/// viewer is one of them.
public struct ReactionCount: Sendable, Hashable {
    public var emoji: String
    public var count: Int
    public var me: Bool

    public init(emoji: String, count: Int, me: Bool) {
        self.emoji = emoji
        self.count = count
        self.me = me
    }
}

public struct MessageRecord: Sendable, Hashable {
    public var id: UUID
    public var chatID: UUID
    public var seq: Int64
    public var senderID: UUID
    public var clientID: UUID
    public var body: String?
    public var attachments: [AttachmentRef]
    public var replyToSeq: Int64?
    public var createdAt: Date
    public var editedAt: Date?
    public var deletedAt: Date?
    /// Most used first, as the viewer sees them; nil when not read (events
    /// sent to every member carry none, since `me` differs per member).
    public var reactions: [ReactionCount]?
    /// The members the sender mentioned (PROTOCOL.md 1.1), as sent.
    public var mentions: [UUID]

    public var isDeleted: Bool { self.deletedAt != nil }

    /// A message as a new send stores it, with `seq` (the store's and fakes' constructor).
    public init(_ new: NewMessage, id: UUID = UUID(), seq: Int64, createdAt: Date = Date()) {
        self.init(
            id: id, chatID: new.chatID, seq: seq, senderID: new.senderID, clientID: new.clientID, body: new.body, attachments: [],
            replyToSeq: new.replyToSeq, createdAt: createdAt, editedAt: nil, deletedAt: nil, mentions: new.mentions
        )
    }

    public init(
        id: UUID, chatID: UUID, seq: Int64, senderID: UUID, clientID: UUID, body: String?, attachments: [AttachmentRef], replyToSeq: Int64?,
        createdAt: Date, editedAt: Date?, deletedAt: Date?, reactions: [ReactionCount]? = nil, mentions: [UUID] = []
    ) {
        self.id = id
        self.chatID = chatID
        self.seq = seq
        self.senderID = senderID
        self.clientID = clientID
        self.body = body
        self.attachments = attachments
        self.replyToSeq = replyToSeq
        self.createdAt = createdAt
        self.editedAt = editedAt
        self.deletedAt = deletedAt
        self.reactions = reactions
        self.mentions = mentions
    }
}

/// Whom a chat's messages notify (PROTOCOL.md 1.1 "Per-chat notification settings").
public enum NotifyLevel: String, Sendable, Hashable, CaseIterable {
    case all, mentions
    /// `"none"` on the wire (not `none`, which Swift would take for a nil Optional).
    case nothing = "none"
}

/// One member's notification settings for one chat. Whether a message
/// notifies them is decided in SQL (`parley_notifies`, migration 008): never
/// with `none`; a mention always otherwise; any other message only with
/// `all` and not muted.
public struct ChatSettings: Sendable, Hashable {
    /// Until then only mentions notify; nil (or a past time): not muted.
    public var mutedUntil: Date?
    public var notify: NotifyLevel

    public init(mutedUntil: Date? = nil, notify: NotifyLevel = .all) {
        self.mutedUntil = mutedUntil
        self.notify = notify
    }
}

/// A chat as one member sees it.
public struct ChatRecord: Sendable, Hashable {
    public var id: UUID
    public var kind: ChatKind
    public var title: String?
    public var isPublic: Bool
    public var createdAt: Date
    public var activityAt: Date
    public var lastSeq: Int64
    public var membersCount: Int
    /// The viewer's read position (0 when the viewer is not a member).
    public var lastReadSeq: Int64
    public var lastMessage: MessageRecord?
    /// The other member of a direct chat.
    public var peer: UserRecord?
    /// The viewer's notification settings (the defaults for a non-member).
    public var settings = ChatSettings()

    public var unreadCount: Int64 { max(0, self.lastSeq - self.lastReadSeq) }
}

public struct MemberRecord: Sendable, Hashable {
    public var user: UserRecord
    public var role: MemberRole
    public var joinedAt: Date
    public var lastReadSeq: Int64
}

/// An earlier version of an edited message: its body (nil: attachments
/// only) and when an edit replaced it.
public struct MessageEditRecord: Sendable, Hashable {
    public var body: String?
    public var replacedAt: Date

    public init(body: String?, replacedAt: Date) {
        self.body = body
        self.replacedAt = replacedAt
    }
}

public struct AttachmentRecord: Sendable, Hashable {
    public var id: UUID
    public var ownerID: UUID
    public var contentType: String
    public var size: Int
    public var sha256: [UInt8]
    public var createdAt: Date
}

/// The messages of one chat after `after` up to and including `through`.
public struct SeqRange: Sendable, Hashable {
    public var chatID: UUID
    public var after: Int64
    public var through: Int64

    public init(chatID: UUID, after: Int64, through: Int64) {
        self.chatID = chatID
        self.after = after
        self.through = through
    }

    /// How many messages it holds (seqs are gapless).
    public var count: Int64 { max(0, self.through - self.after) }
}
