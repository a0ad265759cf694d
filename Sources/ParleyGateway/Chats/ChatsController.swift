import HTTPTypes
import Foundation
public import Hummingbird
import NIOCore
public import ParleyCore
public import ParleyChat

/// `/v1/chats…` and `/v1/attachments…`: authenticated.
public struct ChatsController: Sendable {
    let service: ChatService
    var store: ChatStore { self.service.store }

    public init(service: ChatService) {
        self.service = service
    }

    public func addRoutes(to group: RouterGroup<ParleyRequestContext>) {
        group.post("chats") { request, context in try await self.create(request, context) }
        group.get("chats") { request, context in try await self.list(request, context) }
        group.get("search/messages") { request, context in try await self.search(request, context) }
        group.get("chats/:id") { _, context in
            let (me, chatID) = try Self.ids(context)
            guard let chat = try await self.store.chat(chatID, viewer: me) else { throw ChatError.chatNotFound }
            return try Response.json(ChatBody(chat: chat, members: try await self.store.members(of: chatID)))
        }
        group.patch("chats/:id") { request, context in
            let (me, chatID) = try Self.ids(context)
            let body = try await request.decodeJSON(UpdateChatRequest.self, context: context)
            let title = try body.title.map(Self.validTitle)
            try await self.service.updateGroup(chatID, actor: me, title: title, isPublic: body.isPublic, logger: context.logger)
            guard let chat = try await self.store.chat(chatID, viewer: me) else { throw ChatError.chatNotFound }
            return try Response.json(ChatBody(chat: chat, members: nil))
        }
        group.patch("chats/:id/settings") { request, context in
            let (me, chatID) = try Self.ids(context)
            let body = try await request.decodeJSON(ChatSettingsRequest.self, context: context)
            var notify: NotifyLevel?
            if let raw = body.notify {
                guard let level = NotifyLevel(rawValue: raw) else { throw APIError.badRequest("invalid_notify", "notify must be all, mentions or none") }
                notify = level
            }
            var mutedUntil: Date??
            if let raw = body.mutedUntil {
                if let text = raw {
                    guard let date = Timestamp.parse(text) else {
                        throw APIError.badRequest("invalid_muted_until", "muted_until must be an RFC 3339 timestamp or null")
                    }
                    mutedUntil = .some(date)
                } else {
                    mutedUntil = .some(nil)
                }
            }
            let settings = try await self.service.updateSettings(chatID: chatID, actor: me, mutedUntil: mutedUntil, notify: notify, logger: context.logger)
            return try Response.json(ChatSettingsBody(settings))
        }
        group.post("chats/:id/members") { request, context in
            let (me, chatID) = try Self.ids(context)
            let body = try await request.decodeJSON(AddMemberRequest.self, context: context)
            guard let userID = UUID(uuidString: body.userID) else { throw ChatError.userNotFound }
            guard let role = MemberRole(rawValue: body.role ?? "member"), role != .owner else {
                throw APIError.badRequest("invalid_role", "role must be admin or member")
            }
            let (member, added) = try await self.service.addMember(chatID, actor: me, userID: userID, role: role, logger: context.logger)
            return try Response.json(MemberBody(member), status: added ? .created : .ok)
        }
        group.delete("chats/:id/members/:user_id") { _, context in
            let (me, chatID) = try Self.ids(context)
            guard let userID = context.parameters.get("user_id").flatMap(UUID.init(uuidString:)) else { throw ChatError.userNotFound }
            try await self.service.removeMember(chatID, actor: me, userID: userID, logger: context.logger)
            return Response.noContent()
        }
        group.get("chats/:id/messages") { request, context in
            let (me, chatID) = try Self.ids(context)
            let query = request.uri.queryParameters
            let before = try Self.seqParameter(query.get("before"), name: "before")
            let after = try Self.seqParameter(query.get("after"), name: "after")
            var limit = 50
            if let raw = query.get("limit") {
                guard let value = Int(raw), (1...100).contains(value) else { throw APIError.badRequest("invalid_limit", "limit must be an integer from 1 to 100") }
                limit = value
            }
            let page = try await self.store.history(chatID: chatID, viewer: me, before: before, after: after, limit: limit)
            return try Response.json(MessagePageBody(messages: page.messages.map(MessageBody.init), hasMore: page.hasMore))
        }
        group.post("chats/:id/messages") { request, context in
            let (me, chatID) = try Self.ids(context)
            let body = try await request.decodeJSON(SendMessageRequest.self, context: context)
            let (message, created) = try await self.service.send(
                .init(clientID: body.clientID, body: body.body, attachmentIDs: body.attachmentIDs, replyToSeq: body.replyToSeq, mentions: body.mentions),
                chatID: chatID, senderID: me, logger: context.logger
            )
            return try Response.json(MessageBody(message), status: created ? .created : .ok)
        }
        group.patch("chats/:id/messages/:seq") { request, context in
            let (me, chatID) = try Self.ids(context)
            let seq = try Self.pathSeq(context)
            let body = try await request.decodeJSON(EditMessageRequest.self, context: context)
            return try Response.json(MessageBody(try await self.service.edit(chatID: chatID, seq: seq, actor: me, body: body.body, logger: context.logger)))
        }
        group.get("chats/:id/messages/:seq/edits") { _, context in
            let (me, chatID) = try Self.ids(context)
            return try Response.json(MessageEditsBody(try await self.store.edits(chatID: chatID, seq: try Self.pathSeq(context), viewer: me)))
        }
        for (method, add) in [(HTTPRequest.Method.put, true), (.delete, false)] {
            group.on("chats/:id/messages/:seq/reactions/:emoji", method: method) { _, context in
                let (me, chatID) = try Self.ids(context)
                let seq = try Self.pathSeq(context)
                // the router hands over the path segment as sent: percent-encoded
                let emoji = context.parameters.get("emoji")?.removingPercentEncoding ?? ""
                try await self.service.react(chatID: chatID, seq: seq, userID: me, emoji: emoji, add: add, logger: context.logger)
                return Response.noContent()
            }
        }
        group.delete("chats/:id/messages/:seq") { _, context in
            let (me, chatID) = try Self.ids(context)
            try await self.service.delete(chatID: chatID, seq: try Self.pathSeq(context), actor: me, logger: context.logger)
            return Response.noContent()
        }
        group.post("chats/:id/read") { request, context in
            let (me, chatID) = try Self.ids(context)
            let body = try await request.decodeJSON(ReadRequest.self, context: context)
            try await self.service.markRead(chatID: chatID, userID: me, seq: body.seq, logger: context.logger)
            return Response.noContent()
        }
        group.post("attachments") { request, context in try await self.upload(request, context) }
        group.get("attachments/:id") { _, context in
            let me = try context.requireIdentity().userID
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)),
                let (contentType, data) = try await self.store.attachmentData(id, viewer: me)
            else { throw ChatError.attachmentNotFound }
            var headers = HTTPFields()
            headers[.contentType] = contentType
            headers[.xContentTypeOptions] = "nosniff"
            headers[.cacheControl] = "private, max-age=3600"
            headers[.contentDisposition] = "attachment"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: data))
        }
    }

    func create(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let me = try context.requireIdentity().userID
        let body = try await request.decodeJSON(CreateChatRequest.self, context: context)
        switch body.kind {
        case "direct":
            guard let peer = body.userID.flatMap(UUID.init(uuidString:)) else {
                throw APIError.badRequest("invalid_user", "user_id must be the id of another user")
            }
            let (chat, created) = try await self.service.directChat(me, with: peer, logger: context.logger)
            return try Response.json(ChatBody(chat: chat, members: nil), status: created ? .created : .ok)
        case "group":
            let title = try Self.validTitle(body.title ?? "")
            let raw = body.memberIDs ?? []
            let members = try raw.map { value in
                guard let id = UUID(uuidString: value) else { throw APIError.badRequest("invalid_member_ids", "member_ids must be user ids") }
                return id
            }
            let chat = try await self.service.createGroup(creator: me, title: title, memberIDs: members, isPublic: body.isPublic ?? false, logger: context.logger)
            return try Response.json(ChatBody(chat: chat, members: nil), status: .created)
        default:
            throw APIError.badRequest("invalid_kind", "kind must be direct or group")
        }
    }

    func list(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let me = try context.requireIdentity().userID
        let query = request.uri.queryParameters
        var limit = 20
        if let raw = query.get("limit") {
            guard let value = Int(raw), (1...100).contains(value) else { throw APIError.badRequest("invalid_limit", "limit must be an integer from 1 to 100") }
            limit = value
        }
        var cursor: (Date, UUID)?
        if let raw = query.get("cursor") {
            guard let decoded = ChatCursor.decode(raw) else { throw APIError.badRequest("invalid_cursor", "cursor is not one this server issued") }
            cursor = decoded
        }
        let (chats, hasMore) = try await self.store.chats(of: me, limit: limit, after: cursor)
        let next = hasMore ? chats.last.map { ChatCursor.encode($0.activityAt, $0.id) } : nil
        return try Response.json(ChatListBody(chats: chats.map { ChatBody(chat: $0, members: nil) }, nextCursor: next))
    }

    /// `GET /v1/search/messages?q=&chat_id=&mentions=me&limit=&cursor=`: `q`
    /// (1–200 characters) or `mentions=me`, or both.
    func search(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let me = try context.requireIdentity().userID
        let query = request.uri.queryParameters
        var search = MessageSearch(words: [])
        if let q = query.get("q") {
            guard (1...200).contains(q.count), !MessageValidation.hasForbiddenControl(q) else {
                throw APIError.badRequest("invalid_query", "q must be 1 to 200 characters")
            }
            search.words = q.split(whereSeparator: \.isWhitespace).map(String.init)
        }
        if let mentions = query.get("mentions") {
            guard mentions == "me" else { throw APIError.badRequest("invalid_query", "mentions must be \"me\"") }
            search.mentionsViewer = true
        }
        guard query.get("q") != nil || search.mentionsViewer else { throw APIError.badRequest("invalid_query", "q or mentions=me is required") }
        if let raw = query.get("chat_id") {
            guard let chatID = UUID(uuidString: raw) else { throw APIError.badRequest("invalid_query", "chat_id must be a chat id") }
            search.chatID = chatID
        }
        var limit = 20
        if let raw = query.get("limit") {
            guard let value = Int(raw), (1...50).contains(value) else { throw APIError.badRequest("invalid_limit", "limit must be an integer from 1 to 50") }
            limit = value
        }
        var cursor: SearchCursor?
        if let raw = query.get("cursor") {
            guard let decoded = SearchCursorCoding.decode(raw) else { throw APIError.badRequest("invalid_cursor", "cursor is not one this server issued") }
            cursor = decoded
        }
        // only whitespace: no word to look for, so nothing matches (the mentions filter alone still does)
        if search.words.isEmpty, !search.mentionsViewer {
            return try Response.json(SearchResultsBody(results: [], nextCursor: nil))
        }
        let (results, next) = try await self.service.search(search, viewer: me, limit: limit, after: cursor)
        return try Response.json(SearchResultsBody(
            results: results.map { SearchResultsBody.Result(message: MessageBody($0.message), highlight: $0.highlight) },
            nextCursor: next.map(SearchCursorCoding.encode)
        ))
    }

    func upload(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let me = try context.requireIdentity().userID
        let contentType = AttachmentTypes.mediaType(request.headers[.contentType] ?? "")
        guard AttachmentTypes.allowed.contains(contentType) else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "Content-Type must be one of \(AttachmentTypes.allowed.sorted().joined(separator: ", "))")
        }
        let tooLarge = APIError(.contentTooLarge, "too_large", "attachments are at most \(AttachmentTypes.maxSize) bytes")
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > AttachmentTypes.maxSize { throw tooLarge }
        let data: ByteBuffer
        do {
            data = try await request.body.collect(upTo: AttachmentTypes.maxSize)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
        guard data.readableBytes > 0 else { throw APIError.badRequest("empty_attachment", "the body is empty") }
        guard AttachmentTypes.matches(contentType, data.readableBytesView) else {
            throw APIError(.unsupportedMediaType, "content_mismatch", "the bytes are not \(contentType)")
        }
        let attachment = try await self.service.upload(owner: me, contentType: contentType, data: data)
        return try Response.json(
            AttachmentBody(id: attachment.id.lowercased, contentType: contentType, size: attachment.size, sha256: attachment.sha256.map { String(format: "%02x", $0) }.joined()),
            status: .created
        )
    }

    static func ids(_ context: ParleyRequestContext) throws -> (UUID, UUID) {
        let me = try context.requireIdentity().userID
        guard let chatID = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else { throw ChatError.chatNotFound }
        return (me, chatID)
    }

    static func pathSeq(_ context: ParleyRequestContext) throws -> Int64 {
        guard let seq = context.parameters.get("seq").flatMap(Int64.init), seq > 0 else { throw ChatError.messageNotFound }
        return seq
    }

    static func seqParameter(_ raw: String?, name: String) throws -> Int64? {
        guard let raw else { return nil }
        guard let value = Int64(raw), value >= 0 else { throw APIError.badRequest("invalid_\(name)", "\(name) must be a non-negative integer") }
        return value
    }

    static func validTitle(_ raw: String) throws -> String {
        guard let title = AccountValidation.label(raw, length: 1...128) else {
            throw APIError.badRequest("invalid_title", "title must be 1 to 128 characters without control or bidirectional override characters")
        }
        return title
    }
}

/// Opaque keyset cursor: base64url("<activity µs>:<chat id>").
enum ChatCursor {
    static func encode(_ activityAt: Date, _ id: UUID) -> String {
        Secrets.base64URL(Data("\(Int64((activityAt.timeIntervalSince1970 * 1_000_000).rounded())):\(id.lowercased)".utf8))
    }

    static func decode(_ raw: String) -> (Date, UUID)? {
        guard let data = Secrets.base64URLDecode(raw), let text = String(data: data, encoding: .utf8) else { return nil }
        let parts = text.split(separator: ":")
        // activity times lie between 1970 and 9999: anything else is not a cursor we made
        guard parts.count == 2, let micros = Int64(parts[0]), (0...253_402_300_799_999_999).contains(micros),
            let id = UUID(uuidString: String(parts[1]))
        else { return nil }
        return (Date(timeIntervalSince1970: Double(micros) / 1_000_000), id)
    }
}

/// A search page's end as an opaque string: the rank's bits, the time in
/// microseconds, the chat and the seq.
enum SearchCursorCoding {
    static func encode(_ cursor: SearchCursor) -> String {
        let micros = Int64((cursor.createdAt.timeIntervalSince1970 * 1_000_000).rounded())
        return Secrets.base64URL(Data("\(cursor.rank.bitPattern):\(micros):\(cursor.chatID.lowercased):\(cursor.seq)".utf8))
    }

    static func decode(_ raw: String) -> SearchCursor? {
        guard let data = Secrets.base64URLDecode(raw), let text = String(data: data, encoding: .utf8) else { return nil }
        let parts = text.split(separator: ":")
        guard parts.count == 4, let bits = UInt32(parts[0]), Float(bitPattern: bits).isFinite, let micros = Int64(parts[1]),
            (0...253_402_300_799_999_999).contains(micros), let chatID = UUID(uuidString: String(parts[2])), let seq = Int64(parts[3]), seq > 0
        else { return nil }
        return SearchCursor(rank: Float(bitPattern: bits), createdAt: Date(timeIntervalSince1970: Double(micros) / 1_000_000), chatID: chatID, seq: seq)
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
}
