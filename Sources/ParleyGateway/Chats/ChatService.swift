public import Foundation
import HTTPTypes
import HiredisNIO
public import Logging
public import ParleyCore

/// The one write path for chat changes, shared by REST and WebSocket: it
/// validates, rate-limits, stores in PostgreSQL and then publishes.
public struct ChatService: Sendable {
    public let store: ChatStore
    public let publisher: ChatEventPublisher
    /// Group commit of sends (every send goes through it).
    public let writer: MessageWriter
    let limiter: RateLimiter
    /// Sends per user: 10/s sustained with bursts of 30 (PROTOCOL.md).
    public var sendLimit = [RateLimitRule(30, per: .seconds(3))]

    public init(store: ChatStore, publisher: ChatEventPublisher, limiter: RateLimiter) {
        self.store = store
        self.publisher = publisher
        self.writer = MessageWriter(store: store, publisher: publisher)
        self.limiter = limiter
    }

    /// A send as it arrives (REST body or WebSocket frame), not validated yet.
    public struct SendRequest: Sendable {
        public var clientID: String
        public var body: String?
        public var attachmentIDs: [String]
        public var replyToSeq: Int64?

        public init(clientID: String, body: String?, attachmentIDs: [String]?, replyToSeq: Int64?) {
            self.clientID = clientID
            self.body = body
            self.attachmentIDs = attachmentIDs ?? []
            self.replyToSeq = replyToSeq
        }
    }

    /// Stores (group-committed with concurrent sends) and publishes a message;
    /// `created` is false for an idempotent resend. `onStored` runs after the
    /// commit and before the publish (the WebSocket path sends its ack there,
    /// so the ack precedes the message event).
    public func send(
        _ request: SendRequest, chatID: UUID, senderID: UUID, logger: Logger,
        onStored: @escaping MessageWriter.OnStored = { _ in }
    ) async throws -> (message: MessageRecord, created: Bool) {
        guard let clientID = UUID(uuidString: request.clientID) else {
            throw APIError.badRequest("invalid_client_id", "client_id must be a UUID")
        }
        guard request.attachmentIDs.count <= MessageValidation.maxAttachments else {
            throw APIError.badRequest("invalid_attachments", "at most \(MessageValidation.maxAttachments) attachments")
        }
        let attachmentIDs = try request.attachmentIDs.map { raw in
            guard let id = UUID(uuidString: raw) else { throw APIError.badRequest("invalid_attachments", "attachment_ids must be UUIDs") }
            return id
        }
        guard case .success(let body) = MessageValidation.body(request.body, hasAttachments: !attachmentIDs.isEmpty) else {
            throw APIError.badRequest("invalid_body", "body must be 1 to 4000 characters and at most 16 KiB (or attachments given)")
        }
        if let reply = request.replyToSeq, reply < 1 { throw APIError.badRequest("invalid_reply", "reply_to_seq must be a seq of this chat") }
        if case .limited(let retryAfter) = try await self.limiter.hit("send:\(senderID.lowercased)", self.sendLimit) {
            throw APIError(.tooManyRequests, "rate_limited", "too many messages; slow down", retryAfter: retryAfter)
        }
        return try await Self.mapping {
            try await self.writer.send(
                NewMessage(chatID: chatID, senderID: senderID, clientID: clientID, body: body, attachmentIDs: attachmentIDs, replyToSeq: request.replyToSeq),
                logger: logger,
                onStored: onStored
            )
        }
    }

    public func edit(chatID: UUID, seq: Int64, actor: UUID, body: String, logger: Logger) async throws -> MessageRecord {
        guard case .success(let valid?) = MessageValidation.body(body, hasAttachments: false) else {
            throw APIError.badRequest("invalid_body", "body must be 1 to 4000 characters and at most 16 KiB")
        }
        let message = try await Self.mapping { try await self.store.edit(chatID: chatID, seq: seq, actor: actor, body: valid) }
        await self.publisher.publish(.messageUpdated(message), logger: logger)
        return message
    }

    public func delete(chatID: UUID, seq: Int64, actor: UUID, logger: Logger) async throws {
        let (tombstone, deleted) = try await Self.mapping { try await self.store.delete(chatID: chatID, seq: seq, actor: actor) }
        if deleted { await self.publisher.publish(.messageUpdated(tombstone), logger: logger) }
    }

    public func markRead(chatID: UUID, userID: UUID, seq: Int64, logger: Logger) async throws {
        guard seq >= 0 else { throw APIError.badRequest("invalid_seq", "seq must be a non-negative integer") }
        if let position = try await Self.mapping({ try await self.store.markRead(chatID: chatID, userID: userID, seq: seq) }) {
            await self.publisher.publish(.read(chatID: chatID, userID: userID, seq: position), logger: logger)
        }
    }

    /// Runs a store call, turning its refusals into API errors.
    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ChatError {
            throw APIError(error)
        }
    }
}

extension APIError {
    /// The status and code of each refusal of the chat store.
    init(_ error: ChatError) {
        switch error {
        case .chatNotFound: self = .notFound("chat_not_found", "no such chat (or you are not a member)")
        case .userNotFound: self = .notFound("user_not_found", "no such user")
        case .messageNotFound: self = .notFound("message_not_found", "no such message")
        case .attachmentNotFound: self = .notFound("attachment_not_found", "no such attachment")
        case .notAllowed(let why): self = APIError(.forbidden, "forbidden", why)
        case .notAGroup: self = .badRequest("not_a_group", "only groups have members to manage and titles")
        case .groupFull: self = APIError(.conflict, "group_full", "the group has reached its size limit")
        case .invalidReply: self = .badRequest("invalid_reply", "reply_to_seq is not a message of this chat")
        case .invalidAttachments: self = .badRequest("invalid_attachments", "attachments must be your own uploads, each once")
        case .messageDeleted: self = APIError(.conflict, "message_deleted", "a deleted message cannot be edited")
        case .selfChat: self = .badRequest("invalid_user", "a direct chat needs another user")
        }
    }
}
