import Foundation
import ParleyCore
import ParleyChat

struct MemberBody: Encodable {
    let user: UserBody
    let role: String
    let joinedAt: String
    let lastReadSeq: Int64

    init(_ member: MemberRecord) {
        self.user = .visible(member.user)
        self.role = member.role.rawValue
        self.joinedAt = Timestamp.format(member.joinedAt)
        self.lastReadSeq = member.lastReadSeq
    }

    enum CodingKeys: String, CodingKey {
        case user, role
        case joinedAt = "joined_at"
        case lastReadSeq = "last_read_seq"
    }
}

/// A chat as the caller sees it (`members` only on GET /v1/chats/{id}).
struct ChatBody: Encodable {
    let chat: ChatRecord
    let members: [MemberRecord]?

    enum CodingKeys: String, CodingKey {
        case id, kind, title, `public`, members, peer
        case createdAt = "created_at"
        case lastSeq = "last_seq"
        case lastMessage = "last_message"
        case lastReadSeq = "last_read_seq"
        case unreadCount = "unread_count"
        case membersCount = "members_count"
        case settings
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.chat.id.lowercased, forKey: .id)
        try c.encode(self.chat.kind.rawValue, forKey: .kind)
        try c.encode(self.chat.title, forKey: .title)
        try c.encode(self.chat.isPublic, forKey: .public)
        try c.encode(Timestamp.format(self.chat.createdAt), forKey: .createdAt)
        try c.encode(self.chat.lastSeq, forKey: .lastSeq)
        try c.encode(self.chat.lastMessage.map(MessageBody.init), forKey: .lastMessage)
        try c.encode(self.chat.lastReadSeq, forKey: .lastReadSeq)
        try c.encode(self.chat.unreadCount, forKey: .unreadCount)
        try c.encode(self.chat.membersCount, forKey: .membersCount)
        try c.encode(self.chat.peer.map(UserBody.visible), forKey: .peer)
        try c.encode(ChatSettingsBody(self.chat.settings), forKey: .settings)
        if let members { try c.encode(members.map(MemberBody.init), forKey: .members) }
    }
}

struct ChatListBody: Encodable {
    let chats: [ChatBody]
    let nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case chats
        case nextCursor = "next_cursor"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.chats, forKey: .chats)
        try c.encode(self.nextCursor, forKey: .nextCursor)
    }
}

struct MessagePageBody: Encodable {
    let messages: [MessageBody]
    let hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case messages
        case hasMore = "has_more"
    }
}

struct AttachmentBody: Encodable {
    let id: String
    let contentType: String
    let size: Int
    let sha256: String

    enum CodingKeys: String, CodingKey {
        case id, size, sha256
        case contentType = "content_type"
    }
}

struct CreateChatRequest: Decodable {
    let kind: String
    let userID: String?
    let title: String?
    let memberIDs: [String]?
    let isPublic: Bool?

    enum CodingKeys: String, CodingKey {
        case kind, title
        case userID = "user_id"
        case memberIDs = "member_ids"
        case isPublic = "public"
    }
}

struct UpdateChatRequest: Decodable {
    let title: String?
    let isPublic: Bool?

    enum CodingKeys: String, CodingKey {
        case title
        case isPublic = "public"
    }
}

struct AddMemberRequest: Decodable {
    let userID: String
    let role: String?

    enum CodingKeys: String, CodingKey {
        case role
        case userID = "user_id"
    }
}

struct SendMessageRequest: Decodable {
    let clientID: String
    let body: String?
    let attachmentIDs: [String]?
    let replyToSeq: Int64?
    let mentions: [String]?

    enum CodingKeys: String, CodingKey {
        case body, mentions
        case clientID = "client_id"
        case attachmentIDs = "attachment_ids"
        case replyToSeq = "reply_to_seq"
    }
}

/// A member's notification settings for a chat (PROTOCOL.md 1.1).
struct ChatSettingsBody: Encodable {
    let mutedUntil: String?
    let notify: String

    init(_ settings: ChatSettings) {
        self.mutedUntil = settings.mutedUntil.map(Timestamp.format)
        self.notify = settings.notify.rawValue
    }

    enum CodingKeys: String, CodingKey {
        case notify
        case mutedUntil = "muted_until"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.mutedUntil, forKey: .mutedUntil)
        try c.encode(self.notify, forKey: .notify)
    }
}

/// `PATCH /v1/chats/{id}/settings`: each field optional; `"muted_until": null` unmutes.
struct ChatSettingsRequest: Decodable {
    /// nil: not given; `.some(nil)`: null.
    let mutedUntil: String??
    let notify: String?

    enum CodingKeys: String, CodingKey {
        case notify
        case mutedUntil = "muted_until"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if c.contains(.mutedUntil) {
            self.mutedUntil = .some(try c.decodeNil(forKey: .mutedUntil) ? nil : try c.decode(String.self, forKey: .mutedUntil))
        } else {
            self.mutedUntil = nil
        }
        // null is not a level (left out keeps it)
        self.notify = c.contains(.notify) ? try c.decode(String.self, forKey: .notify) : nil
    }
}

/// `GET /v1/search/messages` (PROTOCOL.md 1.1).
struct SearchResultsBody: Encodable {
    struct Result: Encodable {
        let message: MessageBody
        let highlight: String
    }

    let results: [Result]
    let nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case results
        case nextCursor = "next_cursor"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.results, forKey: .results)
        try c.encode(self.nextCursor, forKey: .nextCursor)
    }
}

struct EditMessageRequest: Decodable {
    let body: String
}

/// The earlier versions of a message, oldest first.
struct MessageEditsBody: Encodable {
    struct Edit: Encodable {
        let body: String?
        let replacedAt: String

        // a null body is written out: the version had attachments only
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(self.body, forKey: .body)
            try c.encode(self.replacedAt, forKey: .replacedAt)
        }

        enum CodingKeys: String, CodingKey {
            case body
            case replacedAt = "replaced_at"
        }
    }

    let edits: [Edit]

    init(_ edits: [MessageEditRecord]) {
        self.edits = edits.map { Edit(body: $0.body, replacedAt: Timestamp.format($0.replacedAt)) }
    }
}

struct ReadRequest: Decodable {
    let seq: Int64
}
