public import Foundation
import Crypto
import HiredisNIO
public import NIOCore
public import Logging
public import ParleyCore

/// Per-user limits of chat writes (PROTOCOL.md "Limits" and 1.1), each
/// shared by every instance (Redis) and answered 429 `rate_limited`.
public struct ChatLimits: Sendable {
    /// Sends: 10/s sustained with bursts of 30.
    public var sends = [RateLimitRule(30, per: .seconds(3))]
    /// Edits, deletes, reactions and read receipts, together.
    public var writes = [RateLimitRule(20, per: .seconds(1))]
    /// Creating chats, changing them, adding and removing members.
    public var chatChanges = [RateLimitRule(60, per: .seconds(60))]
    /// Attachment uploads, by count and by bytes.
    public var uploads = [RateLimitRule(100, per: .seconds(86_400))]
    public var uploadBytes = [RateLimitRule(1 << 30, per: .seconds(86_400))]
    /// Message searches: 5/s sustained with bursts of 15 (each can read
    /// many rows).
    public var searches = [RateLimitRule(15, per: .seconds(3))]

    public init() {}
}

/// How the group-commit writer batches sends (see `MessageWriter`).
public struct SendBatching: Sendable {
    /// Sends in one batch at most.
    public var maxBatch = 500
    /// Batches written at once (each on chats no other one holds).
    public var maxInFlight = 1
    /// Under load, a batch starts at most this long after the one before.
    public var minInterval: Duration = .milliseconds(2)

    public init() {}
}

/// The one write path for chat changes, shared by REST and WebSocket: it
/// validates, rate-limits, stores in PostgreSQL and then publishes.
public struct ChatService: Sendable {
    public let store: ChatStore
    public let publisher: ChatEventPublisher
    /// Group commit of sends (every send goes through it).
    public let writer: MessageWriter
    let limiter: RateLimiter
    public var limits = ChatLimits()

    public init(store: ChatStore, publisher: ChatEventPublisher, limiter: RateLimiter, batching: SendBatching = SendBatching()) {
        self.store = store
        self.publisher = publisher
        self.writer = MessageWriter(
            store: store, publisher: publisher, maxBatch: batching.maxBatch, maxInFlight: batching.maxInFlight, minInterval: batching.minInterval
        )
        self.limiter = limiter
    }

    /// A send as it arrives (REST body or WebSocket frame), not validated yet.
    public struct SendRequest: Sendable {
        public var clientID: String
        public var body: String?
        public var attachmentIDs: [String]
        public var replyToSeq: Int64?
        /// User ids; each must be a member of the chat (checked when stored).
        public var mentions: [String]

        public init(clientID: String, body: String?, attachmentIDs: [String]?, replyToSeq: Int64?, mentions: [String]? = nil) {
            self.clientID = clientID
            self.body = body
            self.attachmentIDs = attachmentIDs ?? []
            self.replyToSeq = replyToSeq
            self.mentions = mentions ?? []
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
            throw ChatError.invalid(.invalidClientID, "client_id must be a UUID")
        }
        guard request.attachmentIDs.count <= MessageValidation.maxAttachments else {
            throw ChatError.invalid(.invalidAttachments, "at most \(MessageValidation.maxAttachments) attachments")
        }
        let attachmentIDs = try request.attachmentIDs.map { raw in
            guard let id = UUID(uuidString: raw) else { throw ChatError.invalid(.invalidAttachments, "attachment_ids must be UUIDs") }
            return id
        }
        guard case .success(let body) = MessageValidation.body(request.body, hasAttachments: !attachmentIDs.isEmpty) else {
            throw ChatError.invalid(.invalidBody, "body must be 1 to 4000 characters and at most 16 KiB (or attachments given)")
        }
        if let reply = request.replyToSeq, reply < 1 { throw ChatError.invalid(.invalidReply, "reply_to_seq must be a seq of this chat") }
        guard case .success(let mentions) = MessageValidation.mentions(request.mentions) else {
            throw ChatError.invalid(.invalidMentions, "mentions must be at most \(MessageValidation.maxMentions) user ids")
        }
        try await self.limit("send:\(senderID.lowercased)", self.limits.sends, "too many messages; slow down")
        return try await self.writer.send(
            NewMessage(
                chatID: chatID, senderID: senderID, clientID: clientID, body: body, attachmentIDs: attachmentIDs, replyToSeq: request.replyToSeq,
                mentions: mentions
            ),
            logger: logger,
            onStored: onStored
        )
    }

    public func edit(chatID: UUID, seq: Int64, actor: UUID, body: String, logger: Logger) async throws -> MessageRecord {
        guard case .success(let valid?) = MessageValidation.body(body, hasAttachments: false) else {
            throw ChatError.invalid(.invalidBody, "body must be 1 to 4000 characters and at most 16 KiB")
        }
        try await self.limitWrites(actor)
        var message = try await self.store.edit(chatID: chatID, seq: seq, actor: actor, body: valid)
        // the event goes to every member: without reactions, whose `me` differs per member
        await self.publisher.publish(.messageUpdated(message), logger: logger)
        // the editor's answer has them as the editor sees them (omitted if they cannot be read now)
        message.reactions = try? await self.store.reactions(chatID: chatID, seq: seq, viewer: actor)
        return message
    }

    public func delete(chatID: UUID, seq: Int64, actor: UUID, logger: Logger) async throws {
        try await self.limitWrites(actor)
        let (tombstone, deleted) = try await self.store.delete(chatID: chatID, seq: seq, actor: actor)
        if deleted { await self.publisher.publish(.messageUpdated(tombstone), logger: logger) }
    }

    /// Adds or removes the member's reaction; an event goes to the members
    /// only when something changed (adding twice is a no-op).
    public func react(chatID: UUID, seq: Int64, userID: UUID, emoji raw: String, add: Bool, logger: Logger) async throws {
        guard let emoji = MessageValidation.emoji(raw) else {
            throw ChatError.invalid(.invalidEmoji, "a reaction is one emoji (one grapheme cluster of at most \(MessageValidation.maxEmojiBytes) bytes)")
        }
        try await self.limitWrites(userID)
        if try await self.store.react(chatID: chatID, seq: seq, userID: userID, emoji: emoji, add: add) {
            await self.publisher.publish(.reaction(chatID: chatID, seq: seq, userID: userID, emoji: emoji, added: add), logger: logger)
        }
    }

    /// A member started or stopped typing: one start and one stop per user
    /// per chat per 2 s, shared by every instance; extra ones are dropped
    /// silently (PROTOCOL.md "Limits"). Membership is the caller's check.
    public func typing(chatID: UUID, userID: UUID, active: Bool, logger: Logger) async throws {
        let key = "typing:{\(chatID.lowercased)}:\(userID.lowercased):\(active ? 1 : 0)"
        guard try await self.publisher.redis.set(key, to: "1", expireSeconds: 2, onlyIfAbsent: true) else { return }
        // dropped silently too where the other member blocked the typer, or when that
        // cannot be known (PostgreSQL down: typing is best effort); after the throttle,
        // so at most one query a second per typer
        guard (try? await self.store.isBlocked(inDirectChat: chatID, actor: userID)) == false else { return }
        await self.publisher.publish(.typing(chatID: chatID, userID: userID, active: active), logger: logger)
    }

    public func markRead(chatID: UUID, userID: UUID, seq: Int64, logger: Logger) async throws {
        guard seq >= 0 else { throw ChatError.invalid(.invalidSeq, "seq must be a non-negative integer") }
        try await self.limitWrites(userID)
        if let position = try await self.store.markRead(chatID: chatID, userID: userID, seq: seq) {
            await self.publisher.publish(.read(chatID: chatID, userID: userID, seq: position), logger: logger)
        }
    }

    // MARK: chats and members

    /// The direct chat of two users (created if needed: both members' sockets follow it).
    public func directChat(_ me: UUID, with peer: UUID, logger: Logger) async throws -> (chat: ChatRecord, created: Bool) {
        try await self.limitChatChanges(me)
        let (chat, created) = try await self.store.directChat(between: me, and: peer)
        if created { await self.publisher.publish([me, peer].map { .memberAdded(chatID: chat.id, userID: $0, lastSeq: 0) }, logger: logger) }
        return (chat, created)
    }

    public func createGroup(creator: UUID, title: String, memberIDs: [UUID], isPublic: Bool, logger: Logger) async throws -> ChatRecord {
        try await self.limitChatChanges(creator)
        let chat = try await self.store.createGroup(creator: creator, title: title, memberIDs: memberIDs, isPublic: isPublic)
        await self.publisher.publish(Set(memberIDs).union([creator]).map { .memberAdded(chatID: chat.id, userID: $0, lastSeq: 0) }, logger: logger)
        return chat
    }

    public func updateGroup(_ chatID: UUID, actor: UUID, title: String?, isPublic: Bool?, logger: Logger) async throws {
        try await self.limitChatChanges(actor)
        try await self.store.updateGroup(chatID, actor: actor, title: title, isPublic: isPublic)
        await self.publisher.publish(.chatUpdated(chatID: chatID), logger: logger)
    }

    /// The member's own notification settings (`mutedUntil`: `.some(nil)`
    /// unmutes, nil leaves it); their other sockets get the chat again.
    public func updateSettings(chatID: UUID, actor: UUID, mutedUntil: Date??, notify: NotifyLevel?, logger: Logger) async throws -> ChatSettings {
        try await self.limitWrites(actor)
        let settings = try await self.store.updateSettings(chatID: chatID, userID: actor, mutedUntil: mutedUntil, notify: notify)
        await self.publisher.publish(.settingsChanged(chatID: chatID, userID: actor), logger: logger)
        return settings
    }

    public func addMember(_ chatID: UUID, actor: UUID, userID: UUID, role: MemberRole, logger: Logger) async throws -> (member: MemberRecord, added: Bool) {
        try await self.limitChatChanges(actor)
        let (member, added, lastSeq) = try await self.store.addMember(chatID, actor: actor, userID: userID, role: role)
        if added { await self.publisher.publish(.memberAdded(chatID: chatID, userID: userID, lastSeq: lastSeq), logger: logger) }
        return (member, added)
    }

    public func removeMember(_ chatID: UUID, actor: UUID, userID: UUID, logger: Logger) async throws {
        try await self.limitChatChanges(actor)
        let newOwner = try await self.store.removeMember(chatID, actor: actor, userID: userID)
        var events: [ChatEvent] = [.memberRemoved(chatID: chatID, userID: userID)]
        if newOwner != nil { events.append(.chatUpdated(chatID: chatID)) }
        await self.publisher.publish(events, logger: logger)
    }

    // MARK: attachments

    /// Stores an upload, within the uploader's daily count and bytes.
    public func upload(owner: UUID, contentType: String, data: ByteBuffer) async throws -> AttachmentRecord {
        let user = owner.lowercased
        let slot = UUID().uuidString
        if case .limited(let retryAfter) = try await self.limiter.reserve("uploads:\(user)", self.limits.uploads, token: slot) {
            throw RateLimited("too many uploads today; try again later", retryAfter: retryAfter)
        }
        if case .limited(let retryAfter) = try await self.limiter.hit("upload-bytes:\(user)", self.limits.uploadBytes, weight: data.readableBytes) {
            try await self.limiter.giveBack("uploads:\(user)", token: slot)
            throw RateLimited("too many bytes uploaded today; try again later", retryAfter: retryAfter)
        }
        let digest = Array(SHA256.hash(data: data.readableBytesView))
        return try await self.store.createAttachment(ownerID: owner, contentType: contentType, data: data, sha256: digest)
    }

    // MARK: search

    /// One search result: the message and its body with the matched words
    /// marked (`SearchHighlight`).
    public struct SearchResult: Sendable {
        public var message: MessageRecord
        public var highlight: String
    }

    /// The viewer's messages matching `search` (see `ChatStore.search`),
    /// with highlights; `next` continues after the last result when more
    /// exist. Within the per-user search limit.
    public func search(
        _ search: MessageSearch, viewer: UUID, limit: Int, after cursor: SearchCursor?
    ) async throws -> (results: [SearchResult], next: SearchCursor?) {
        try await self.limit("search:\(viewer.lowercased)", self.limits.searches, "too many searches; slow down")
        let (hits, hasMore) = try await self.store.search(search, viewer: viewer, limit: limit, after: cursor)
        let words = SearchHighlight.queryWords(search.words.joined(separator: " "))
        let results = hits.map { SearchResult(message: $0.message, highlight: SearchHighlight.highlight($0.message.body ?? "", query: words)) }
        return (results, hasMore ? hits.last?.cursor : nil)
    }

    // MARK: limits

    func limitWrites(_ user: UUID) async throws {
        try await self.limit("writes:\(user.lowercased)", self.limits.writes, "too many changes; slow down")
    }

    func limitChatChanges(_ user: UUID) async throws {
        try await self.limit("chats:\(user.lowercased)", self.limits.chatChanges, "too many chat and membership changes; slow down")
    }

    func limit(_ key: String, _ rules: [RateLimitRule], _ detail: String) async throws {
        try await self.limiter.enforce(key, rules, detail)
    }
}
