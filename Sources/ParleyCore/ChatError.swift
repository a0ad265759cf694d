/// Why the chat domain refused an operation: a stable machine `code`
/// (PROTOCOL.md "Errors"), a human `detail`, and a `kind` that each edge
/// maps once — to an HTTP status and problem+json at the REST edge, to an
/// `error` frame at the WebSocket edge. Thrown by the chat store and the
/// chat service; never carries an HTTP status itself.
///
/// Compare by code (`error.code == .chatNotFound`) or by value
/// (`error == .chatNotFound`, which also compares the detail).
public struct ChatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of refusal this is, independent of transport.
    public enum Kind: Sendable, Hashable {
        /// The request itself is malformed (HTTP 400).
        case invalid
        /// It names something that does not exist for the caller (404).
        case notFound
        /// The caller may not do this (403).
        case forbidden
        /// It conflicts with the current state (409).
        case conflict
        /// Not done now; the same request may succeed after `retryAfter` (503).
        case unavailable
    }

    /// A stable machine code; its `rawValue` is what clients see.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public let kind: Kind

        private init(_ rawValue: String, _ kind: Kind) {
            self.rawValue = rawValue
            self.kind = kind
        }

        public static let chatNotFound = Code("chat_not_found", .notFound)
        public static let userNotFound = Code("user_not_found", .notFound)
        public static let messageNotFound = Code("message_not_found", .notFound)
        public static let attachmentNotFound = Code("attachment_not_found", .notFound)
        public static let forbidden = Code("forbidden", .forbidden)
        public static let blocked = Code("blocked", .forbidden)
        public static let notAGroup = Code("not_a_group", .invalid)
        public static let groupFull = Code("group_full", .conflict)
        public static let messageDeleted = Code("message_deleted", .conflict)
        public static let invalidUser = Code("invalid_user", .invalid)
        public static let invalidReply = Code("invalid_reply", .invalid)
        public static let invalidAttachments = Code("invalid_attachments", .invalid)
        public static let invalidMentions = Code("invalid_mentions", .invalid)
        public static let invalidClientID = Code("invalid_client_id", .invalid)
        public static let invalidBody = Code("invalid_body", .invalid)
        public static let invalidSeq = Code("invalid_seq", .invalid)
        public static let invalidFrame = Code("invalid_frame", .invalid)
        public static let invalidEmoji = Code("invalid_emoji", .invalid)
        public static let tooManyReactions = Code("too_many_reactions", .conflict)
        public static let unavailable = Code("unavailable", .unavailable)

        public var description: String { self.rawValue }
    }

    public let code: Code
    public let detail: String
    /// Seconds after which the same request may succeed (`unavailable` only).
    public let retryAfter: Int?

    public init(_ code: Code, _ detail: String, retryAfter: Int? = nil) {
        self.code = code
        self.detail = detail
        self.retryAfter = retryAfter
    }

    public var kind: Kind { self.code.kind }
    public var description: String { "\(self.code): \(self.detail)" }

    // MARK: the store's refusals

    public static let chatNotFound = ChatError(.chatNotFound, "no such chat (or you are not a member)")
    public static let userNotFound = ChatError(.userNotFound, "no such user")
    public static let messageNotFound = ChatError(.messageNotFound, "no such message")
    public static let attachmentNotFound = ChatError(.attachmentNotFound, "no such attachment")
    public static let notAGroup = ChatError(.notAGroup, "only groups have members to manage and titles")
    public static let groupFull = ChatError(.groupFull, "the group has reached its size limit")
    public static let invalidReply = ChatError(.invalidReply, "reply_to_seq is not a message of this chat")
    public static let invalidAttachments = ChatError(.invalidAttachments, "attachments must be your own uploads, each once")
    public static let invalidMentions = ChatError(.invalidMentions, "mentions must name members of this chat")
    public static let messageDeleted = ChatError(.messageDeleted, "a deleted message cannot be edited")
    public static let selfChat = ChatError(.invalidUser, "a direct chat needs another user")
    /// The other user blocked the caller (PROTOCOL.md 1.1).
    public static let blocked = ChatError(.blocked, "this user does not accept messages or invitations from you")
    public static let tooManyReactions = ChatError(
        .tooManyReactions, "a message has at most \(MessageValidation.maxReactionEmoji) different reactions; use one of those it has"
    )
    public static let messageDeletedReaction = ChatError(.messageDeleted, "a deleted message cannot get reactions")

    /// The caller's role does not allow this; `why` says what would.
    public static func notAllowed(_ why: String) -> ChatError { ChatError(.forbidden, why) }

    /// A malformed request: `code` names the field, `detail` what is expected.
    public static func invalid(_ code: Code, _ detail: String) -> ChatError {
        precondition(code.kind == .invalid)
        return ChatError(code, detail)
    }

    /// Not done now (nothing was stored); the same request may be retried.
    public static func unavailable(_ detail: String, retryAfter: Int) -> ChatError {
        ChatError(.unavailable, detail, retryAfter: retryAfter)
    }
}
