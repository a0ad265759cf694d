public import Foundation
public import NIOCore
import ParleyCore

/// What one Parley process tells the others about a chat change, on the
/// chat and user channels of Redis pub/sub and in the `events:messages`
/// stream: a one-line header that routing reads (version, kind, chat, user,
/// seq, flag), then the client frame, encoded once by the publisher and
/// passed on byte for byte. A receiver reads the header and never parses
/// the frame (message bodies are up to 16 KiB).
///
///     P1 message 0192…-chat 0192…-sender 42 -\n{"type":"message","message":{…}}
///
/// Fields are separated by one space; `-` is an absent field. Decoding is
/// strict: an unknown version or kind is an `EventEnvelopeError` that a
/// receiver counts and skips (a newer publisher during a rolling upgrade).
public struct EventEnvelope: Sendable, Equatable {
    public static let version = 1

    public enum Kind: String, Sendable, CaseIterable {
        /// A new message; `seq` is its seq, `userID` its sender.
        case message
        /// An edit or deletion; `seq` is the message's seq.
        case messageUpdated = "message_updated"
        /// A read position; `userID` read up to `seq`.
        case read
        /// `userID` added (`flag` true) or removed a reaction on message `seq`.
        case reaction
        /// `userID` started (`flag` true) or stopped typing.
        case typing
        /// `userID` came online (`flag` true) or went offline.
        case presence
        /// The chat's title, visibility or members changed (no frame: each member's chat is read again);
        /// with `userID`, only that member's view of it changed (their settings).
        case chatUpdated = "chat_updated"
        /// `userID` joined; `seq` is the chat's last seq then (no frame).
        case memberAdded = "member_added"
        /// `userID` left or was removed (no frame).
        case memberRemoved = "member_removed"
        /// A new account, `userID` (no frame; only in the notifier's stream, for webhooks).
        case userRegistered = "user_registered"
    }

    public var kind: Kind
    public var chatID: UUID?
    public var userID: UUID?
    public var seq: Int64?
    public var flag: Bool?
    /// The frame clients receive (JSON), empty for internal kinds.
    public var frame: ByteBuffer

    public init(_ kind: Kind, chatID: UUID? = nil, userID: UUID? = nil, seq: Int64? = nil, flag: Bool? = nil, frame: ByteBuffer = ByteBuffer()) {
        self.kind = kind
        self.chatID = chatID
        self.userID = userID
        self.seq = seq
        self.flag = flag
        self.frame = frame
    }

    /// The header line, without the newline.
    public var header: String {
        [
            "P\(Self.version)", self.kind.rawValue, self.chatID?.lowercased ?? "-", self.userID?.lowercased ?? "-",
            self.seq.map(String.init) ?? "-", self.flag.map { $0 ? "1" : "0" } ?? "-",
        ].joined(separator: " ")
    }

    /// Header, newline, frame.
    public func encoded() -> ByteBuffer {
        let header = self.header
        var buffer = ByteBuffer()
        buffer.reserveCapacity(header.utf8.count + 1 + self.frame.readableBytes)
        buffer.writeString(header)
        buffer.writeInteger(UInt8(ascii: "\n"))
        var frame = self.frame
        buffer.writeBuffer(&frame)
        return buffer
    }

    static let headerLimit = 256

    /// Reads an envelope; the frame is a slice of `buffer`, not a copy.
    /// (`RealtimeService` also reads the JSON events of the version before
    /// envelopes, which this does not: see `legacy(_:)`.)
    public static func decode(_ buffer: ByteBuffer) throws(EventEnvelopeError) -> EventEnvelope {
        let view = buffer.readableBytesView
        guard let newline = view.prefix(Self.headerLimit).firstIndex(of: UInt8(ascii: "\n")) else {
            throw EventEnvelopeError(view.first == UInt8(ascii: "P") ? .malformedHeader : .notAnEnvelope, "no header line")
        }
        let headerLength = newline - view.startIndex
        var envelope = try Self.decode(header: String(decoding: view.prefix(headerLength), as: UTF8.self))
        envelope.frame = buffer.getSlice(at: buffer.readerIndex + headerLength + 1, length: buffer.readableBytes - headerLength - 1) ?? ByteBuffer()
        return envelope
    }

    /// Reads a header line (as stored alone in a stream entry).
    public static func decode(header: String) throws(EventEnvelopeError) -> EventEnvelope {
        let fields = header.split(separator: " ", omittingEmptySubsequences: false)
        guard let first = fields.first, first.hasPrefix("P") else { throw EventEnvelopeError(.notAnEnvelope, "no P<version>") }
        guard let version = Int(first.dropFirst()) else { throw EventEnvelopeError(.malformedHeader, "version \(first)") }
        guard version == Self.version else { throw EventEnvelopeError(.unsupportedVersion, "version \(version)") }
        guard fields.count == 6 else { throw EventEnvelopeError(.malformedHeader, "\(fields.count) fields") }
        guard let kind = Kind(rawValue: String(fields[1])) else { throw EventEnvelopeError(.unknownKind, String(fields[1].prefix(40))) }
        func optional<T>(_ field: Substring, _ name: String, _ parse: (Substring) -> T?) throws(EventEnvelopeError) -> T? {
            if field == "-" { return nil }
            guard let value = parse(field) else { throw EventEnvelopeError(.malformedHeader, "\(name) \(field.prefix(40))") }
            return value
        }
        return EventEnvelope(
            kind,
            chatID: try optional(fields[2], "chat") { UUID(uuidString: String($0)) },
            userID: try optional(fields[3], "user") { UUID(uuidString: String($0)) },
            // 0 ..< Int64.max: a seq is never negative, and its successor must exist
            seq: try optional(fields[4], "seq") { Int64($0).flatMap { $0 >= 0 && $0 < Int64.max ? $0 : nil } },
            flag: try optional(fields[5], "flag") { $0 == "1" ? true : $0 == "0" ? false : nil }
        )
    }
}

extension EventEnvelope {
    /// The JSON event a gateway of the version before envelopes published
    /// (the client frame itself, with internal types for membership), as an
    /// envelope: during a rolling upgrade, new gateways still route what old
    /// ones publish. Nil for anything else. Remove once no such gateway runs.
    public static func legacy(_ payload: ByteBuffer, channelChatID: UUID?) -> EventEnvelope? {
        guard payload.readableBytesView.first == UInt8(ascii: "{"),
            let object = try? JSONSerialization.jsonObject(with: Data(payload.readableBytesView)) as? [String: Any],
            let type = object["type"] as? String
        else { return nil }
        func uuid(_ value: Any?) -> UUID? { (value as? String).flatMap(UUID.init(uuidString:)) }
        func seq(_ value: Any?) -> Int64? { (value as? NSNumber).map(\.int64Value).flatMap { $0 >= 0 && $0 < Int64.max ? $0 : nil } }
        let message = object["message"] as? [String: Any]
        let chat = uuid(object["chat_id"]), user = uuid(object["user_id"])
        switch type {
        case "message", "message_updated":
            guard let message, let chatID = uuid(message["chat_id"]), let messageSeq = seq(message["seq"]) else { return nil }
            return EventEnvelope(type == "message" ? .message : .messageUpdated, chatID: chatID, userID: uuid(message["sender_id"]), seq: messageSeq, frame: payload)
        case "read":
            guard let chat, let user, let readSeq = seq(object["seq"]) else { return nil }
            return EventEnvelope(.read, chatID: chat, userID: user, seq: readSeq, frame: payload)
        case "typing":
            guard let chat, let user, let active = object["active"] as? Bool else { return nil }
            return EventEnvelope(.typing, chatID: chat, userID: user, flag: active, frame: payload)
        case "presence":
            guard let channelChatID, let user, let online = object["online"] as? Bool else { return nil }
            return EventEnvelope(.presence, chatID: channelChatID, userID: user, flag: online, frame: payload)
        case "chat_updated":
            guard let chat else { return nil }
            return EventEnvelope(.chatUpdated, chatID: chat)
        case "member_added":
            guard let chat, let user else { return nil }
            return EventEnvelope(.memberAdded, chatID: chat, userID: user, seq: seq(object["last_seq"]) ?? 0)
        case "member_removed":
            guard let chat, let user else { return nil }
            return EventEnvelope(.memberRemoved, chatID: chat, userID: user)
        default:
            return nil
        }
    }
}

public struct EventEnvelopeError: Error, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not an envelope at all.
        case notAnEnvelope
        /// An envelope of a version this process does not read.
        case unsupportedVersion
        /// A kind this process does not know (a newer publisher).
        case unknownKind
        /// A header that does not follow the format.
        case malformedHeader
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "\(self.code.rawValue): \(self.detail)" }
}

/// The streams chat events are appended to.
public enum EventStreams {
    /// What the notifier acts on (`EventEnvelope` headers in the field `e`),
    /// capped near a million entries: new and changed messages, read
    /// positions, membership changes and new accounts.
    public static let messages = "events:messages"
    /// The kinds appended to `messages`: a new message notifies (digests,
    /// pushes), a read position retracts what it notified (appended only by
    /// gateways with Web Push configured), and the rest become webhooks. (Mailers of earlier versions skip all but new
    /// messages; one before `user_registered` logs each as unreadable.)
    public static let streamedKinds: Set<EventEnvelope.Kind> = [.message, .messageUpdated, .read, .memberAdded, .memberRemoved, .userRegistered]
    public static let messagesMaxLength = 1_000_000
    /// The field of a stream entry that holds the envelope's header.
    public static let envelopeField = "e"

    /// The fields a mail worker of the version before envelopes reads, written
    /// beside `e` so that gateways can be upgraded before the mailers.
    /// Remove once no such mailer runs.
    public static func legacyFields(of envelope: EventEnvelope) -> [(String, String)] {
        guard envelope.kind == .message, let chat = envelope.chatID, let seq = envelope.seq, let sender = envelope.userID else { return [] }
        return [("type", "message.created"), ("chat_id", chat.lowercased), ("seq", String(seq)), ("sender_id", sender.lowercased)]
    }
}
