import Foundation
import ParleyCore
import ParleyChat

/// A frame a client sends on `/v1/ws` (PROTOCOL.md "Client → server").
enum ClientFrame {
    case hello(token: String?, resume: [UUID: Int64])
    case send(ref: String?, chatID: UUID, request: ChatService.SendRequest)
    case typing(ref: String?, chatID: UUID, active: Bool)
    case read(ref: String?, chatID: UUID, seq: Int64)
    case ping(ref: String?)

    /// Why a frame was refused; sent back as `{"type": "error", "ref", "code", "detail"}`.
    struct Invalid: Error {
        let ref: String?
        let code: String
        let detail: String
    }

    static let maxRefLength = 128

    static func parse(_ text: String) throws(Invalid) -> ClientFrame {
        guard let data = text.data(using: .utf8), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Invalid(ref: nil, code: "invalid_json", detail: "a frame is one JSON object")
        }
        if let raw = object["ref"], !(raw is String) { throw Invalid(ref: nil, code: "invalid_frame", detail: "ref must be a string") }
        // echoed in replies: bounded, so that a client cannot make the server repeat a large blob
        if let raw = object["ref"] as? String, raw.count > Self.maxRefLength {
            throw Invalid(ref: nil, code: "invalid_frame", detail: "ref must be at most \(Self.maxRefLength) characters")
        }
        let ref = object["ref"] as? String
        func fail(_ code: String, _ detail: String) -> Invalid { Invalid(ref: ref, code: code, detail: detail) }
        guard let type = object["type"] as? String else { throw fail("invalid_frame", "type is required") }
        func chatID() throws(Invalid) -> UUID {
            guard let raw = object["chat_id"] else { throw fail("invalid_frame", "chat_id is required") }
            guard let text = raw as? String, let id = UUID(uuidString: text) else { throw fail("chat_not_found", "no such chat (or you are not a member)") }
            return id
        }
        func integer(_ key: String) throws(Invalid) -> Int64? {
            guard let raw = object[key], !(raw is NSNull) else { return nil }
            guard !isJSONBool(raw), let number = raw as? NSNumber, let value = Int64(exactly: number.doubleValue) else {
                throw fail("invalid_frame", "\(key) must be an integer")
            }
            return value
        }
        switch type {
        case "hello":
            var resume: [UUID: Int64] = [:]
            if let raw = object["resume"], !(raw is NSNull) {
                guard let map = raw as? [String: Any] else { throw fail("invalid_frame", "resume must map chat ids to seqs") }
                for (key, value) in map {
                    guard let id = UUID(uuidString: key), !isJSONBool(value), let number = value as? NSNumber, let seq = Int64(exactly: number.doubleValue), seq >= 0 else {
                        throw fail("invalid_frame", "resume must map chat ids to seqs")
                    }
                    resume[id] = seq
                }
            }
            if let token = object["token"], !(token is String) { throw fail("invalid_frame", "token must be a string") }
            return .hello(token: object["token"] as? String, resume: resume)
        case "send":
            let chat = try chatID()
            guard let clientID = object["client_id"] as? String else { throw fail("invalid_frame", "client_id is required") }
            if let body = object["body"], !(body is String), !(body is NSNull) { throw fail("invalid_frame", "body must be a string") }
            var attachments: [String]?
            if let raw = object["attachment_ids"], !(raw is NSNull) {
                guard let list = raw as? [String] else { throw fail("invalid_frame", "attachment_ids must be a list of ids") }
                attachments = list
            }
            var mentions: [String]?
            if let raw = object["mentions"], !(raw is NSNull) {
                guard let list = raw as? [String] else { throw fail("invalid_frame", "mentions must be a list of user ids") }
                mentions = list
            }
            return .send(
                ref: ref, chatID: chat,
                request: ChatService.SendRequest(
                    clientID: clientID, body: object["body"] as? String, attachmentIDs: attachments, replyToSeq: try integer("reply_to_seq"), mentions: mentions
                )
            )
        case "typing":
            let chat = try chatID()
            guard let active = object["active"] as? Bool else { throw fail("invalid_frame", "active must be true or false") }
            return .typing(ref: ref, chatID: chat, active: active)
        case "read":
            let chat = try chatID()
            guard let seq = try integer("seq") else { throw fail("invalid_frame", "seq is required") }
            return .read(ref: ref, chatID: chat, seq: seq)
        case "ping":
            return .ping(ref: ref)
        default:
            throw fail("unknown_type", "unknown frame type \"\(type)\"")
        }
    }
}

/// true/false in JSON (which Foundation may also offer as an NSNumber).
func isJSONBool(_ value: Any) -> Bool {
    if type(of: value) == Bool.self { return true }
    if let number = value as? NSNumber { return String(cString: number.objCType) == "c" }
    return false
}

/// Server frames built here (events from other instances arrive ready-made).
enum ServerFrame {
    static func json(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func error(ref: String?, code: String, detail: String) -> String {
        var object: [String: Any] = ["type": "error", "code": code, "detail": detail]
        if let ref { object["ref"] = ref }
        return json(object)
    }

    /// The answer to an accepted hello; built directly (ids and a number need
    /// no escaping): one per connect, where `json`'s serializer was a
    /// noticeable share of a connect's CPU.
    static func ready(connectionID: UUID, userID: UUID, heartbeat: Duration) -> String {
        #"{"connection_id":"\#(connectionID.lowercased)","heartbeat_s":\#(heartbeat.components.seconds),"type":"ready","user_id":"\#(userID.lowercased)"}"#
    }

    /// A `message` event.
    static func message(_ message: MessageRecord) -> String {
        encoded(MessageEvent(message: MessageBody(message)))
    }

    static func encoded(_ value: some Encodable) -> String {
        String(decoding: (try? JSONEncoder.parley.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }

    struct Ack: Encodable {
        let type = "ack"
        let ref: String?
        let message: MessageBody
    }

    struct MessageEvent: Encodable {
        let type = "message"
        let message: MessageBody
    }

    struct ChatEvent: Encodable {
        let type = "chat"
        let chat: ChatBody
    }
}
