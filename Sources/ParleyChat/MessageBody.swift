public import Foundation
public import ParleyCore

// The wire forms the chat domain puts into events (PROTOCOL.md "Message"),
// encoded once by the publisher; the gateway's REST answers use them too.

extension JSONEncoder {
    /// How Parley writes JSON on the wire: slashes unescaped.
    public static let parley: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }()
}

public struct AttachmentRefBody: Encodable, Sendable {
    public let id: String
    public let contentType: String
    public let size: Int

    enum CodingKeys: String, CodingKey {
        case id, size
        case contentType = "content_type"
    }
}

/// A message on the wire. A deleted message keeps its seq, with a null body and no attachments.
public struct MessageBody: Encodable, Sendable {
    public let id: String
    public let chatID: String
    public let seq: Int64
    public let senderID: String
    public let clientID: String
    public let body: String?
    public let attachments: [AttachmentRefBody]
    public let replyToSeq: Int64?
    public let createdAt: String
    public let editedAt: String?
    public let deleted: Bool
    /// Most used first, as the reader sees them; absent where they were not
    /// read (`message_updated` events, replays after a resume).
    public let reactions: [ReactionBody]?
    /// The mentioned users' ids (none once deleted).
    public let mentions: [String]

    public init(_ message: MessageRecord) {
        self.id = message.id.lowercased
        self.chatID = message.chatID.lowercased
        self.seq = message.seq
        self.senderID = message.senderID.lowercased
        self.clientID = message.clientID.lowercased
        self.body = message.isDeleted ? nil : message.body
        self.attachments = message.isDeleted ? [] : message.attachments.map { AttachmentRefBody(id: $0.id.lowercased, contentType: $0.contentType, size: $0.size) }
        self.replyToSeq = message.replyToSeq
        self.createdAt = Timestamp.format(message.createdAt)
        self.editedAt = message.editedAt.map(Timestamp.format)
        self.deleted = message.isDeleted
        self.reactions = message.reactions.map { $0.map { ReactionBody(emoji: $0.emoji, count: $0.count, me: $0.me) } }
        self.mentions = message.isDeleted ? [] : message.mentions.map(\.lowercased)
    }

    enum CodingKeys: String, CodingKey {
        case id, seq, body, attachments, deleted, reactions, mentions
        case chatID = "chat_id"
        case senderID = "sender_id"
        case clientID = "client_id"
        case replyToSeq = "reply_to_seq"
        case createdAt = "created_at"
        case editedAt = "edited_at"
    }

    // nulls are written out: clients see every field of PROTOCOL.md
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(self.id, forKey: .id)
        try c.encode(self.chatID, forKey: .chatID)
        try c.encode(self.seq, forKey: .seq)
        try c.encode(self.senderID, forKey: .senderID)
        try c.encode(self.clientID, forKey: .clientID)
        try c.encode(self.body, forKey: .body)
        try c.encode(self.attachments, forKey: .attachments)
        try c.encode(self.replyToSeq, forKey: .replyToSeq)
        try c.encode(self.createdAt, forKey: .createdAt)
        try c.encode(self.editedAt, forKey: .editedAt)
        try c.encode(self.deleted, forKey: .deleted)
        try c.encodeIfPresent(self.reactions, forKey: .reactions)
        try c.encode(self.mentions, forKey: .mentions)
    }
}

/// One emoji on a message (PROTOCOL.md 1.1).
public struct ReactionBody: Encodable, Sendable {
    public let emoji: String
    public let count: Int
    public let me: Bool
}
