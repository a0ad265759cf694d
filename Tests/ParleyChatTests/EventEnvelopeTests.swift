import Foundation
import NIOCore
import ParleyChat
import Testing

/// The envelope between Parley processes: what goes in comes out, the
/// frame byte for byte and never parsed, and what a reader cannot read is
/// a precise error rather than a guess.
@Suite struct EventEnvelopeTests {
    static let chat = UUID()
    static let user = UUID()

    @Test(arguments: EventEnvelope.Kind.allCases)
    func everyKindRoundTrips(kind: EventEnvelope.Kind) throws {
        // a frame with a newline, non-ASCII text, and bytes that are not even JSON
        let frame = ByteBuffer(string: "{\"type\":\"x\",\"body\":\"line one\\nline two — ünïcødé 👋\"}\n{not json")
        let variants = [
            EventEnvelope(kind),
            EventEnvelope(kind, chatID: Self.chat, userID: Self.user, seq: 9_223_372_036_854_775_806, flag: true, frame: frame),
            EventEnvelope(kind, chatID: Self.chat, seq: 0, flag: false),
            EventEnvelope(kind, userID: Self.user, frame: frame),
        ]
        for envelope in variants {
            let decoded = try EventEnvelope.decode(envelope.encoded())
            #expect(decoded == envelope)
            #expect(decoded.frame.readableBytesView.elementsEqual(envelope.frame.readableBytesView))
            // a stream entry holds the header alone
            var headerOnly = envelope
            headerOnly.frame = ByteBuffer()
            #expect(try EventEnvelope.decode(header: envelope.header) == headerOnly)
        }
    }

    @Test func theHeaderIsOneReadableLine() {
        let envelope = EventEnvelope(.message, chatID: Self.chat, userID: Self.user, seq: 42, frame: ByteBuffer(string: "{}"))
        #expect(envelope.header == "P1 message \(Self.chat.uuidString.lowercased()) \(Self.user.uuidString.lowercased()) 42 -")
        #expect(String(buffer: envelope.encoded()) == envelope.header + "\n{}")
        #expect(EventEnvelope(.typing, flag: false).header == "P1 typing - - - 0")
    }

    @Test func theFrameIsASliceOfThePayloadNotACopyOfIt() throws {
        var payload = ByteBuffer(string: "ignored prefix")
        payload.moveReaderIndex(forwardBy: payload.readableBytes)
        payload.writeString("P1 read - - 3 -\n{\"type\":\"read\"}")
        let decoded = try EventEnvelope.decode(payload)
        #expect(decoded.seq == 3)
        #expect(String(buffer: decoded.frame) == "{\"type\":\"read\"}")
    }

    @Test(arguments: [
        ("{\"type\":\"message\"}", EventEnvelopeError.Code.notAnEnvelope),  // the JSON of the previous version
        ("", .notAnEnvelope),
        ("P1 message - - - -", .malformedHeader),  // no newline
        ("P2 message - - - -\n{}", .unsupportedVersion),
        ("Px message - - - -\n", .malformedHeader),
        ("P1 poll - - - -\n{}", .unknownKind),
        ("P1 message - - -\n", .malformedHeader),  // five fields
        ("P1 message - - - - extra\n", .malformedHeader),
        ("P1 message not-a-uuid - 1 -\n", .malformedHeader),
        ("P1 message - - seven -\n", .malformedHeader),
        ("P1 message - - -1 -\n", .malformedHeader),  // a seq is never negative
        ("P1 message - - 9223372036854775807 -\n", .malformedHeader),  // its successor must exist
        ("P1 typing - - - yes\n", .malformedHeader),
        ("P1  message - - - -\n", .malformedHeader),  // two spaces: an empty field
    ] as [(String, EventEnvelopeError.Code)])
    func whatCannotBeReadIsAPreciseError(payload: String, code: EventEnvelopeError.Code) {
        #expect {
            _ = try EventEnvelope.decode(ByteBuffer(string: payload))
        } throws: { error in
            (error as? EventEnvelopeError)?.code == code
        }
    }

    @Test func theJSONEventsOfThePreviousVersionAreRead() throws {
        let (chat, user, other) = (Self.chat.uuidString.lowercased(), Self.user.uuidString.lowercased(), UUID())
        func legacy(_ json: String, channel: UUID? = nil) -> EventEnvelope? {
            EventEnvelope.legacy(ByteBuffer(string: json), channelChatID: channel)
        }
        let message = #"{"message":{"chat_id":"\#(chat)","seq":4,"sender_id":"\#(user)","body":"hi"},"type":"message"}"#
        let decoded = try #require(legacy(message))
        #expect(decoded.kind == .message && decoded.chatID == Self.chat && decoded.seq == 4 && decoded.userID == Self.user)
        #expect(String(buffer: decoded.frame) == message, "the frame is the payload itself")
        #expect(legacy(#"{"message":{"chat_id":"\#(chat)","seq":4},"type":"message_updated"}"#)?.kind == .messageUpdated)
        #expect(legacy(#"{"type":"read","chat_id":"\#(chat)","user_id":"\#(user)","seq":2}"#) == EventEnvelope(.read, chatID: Self.chat, userID: Self.user, seq: 2, frame: ByteBuffer(string: #"{"type":"read","chat_id":"\#(chat)","user_id":"\#(user)","seq":2}"#)))
        #expect(legacy(#"{"type":"typing","chat_id":"\#(chat)","user_id":"\#(user)","active":true}"#)?.flag == true)
        let presence = legacy(#"{"type":"presence","user_id":"\#(user)","online":false}"#, channel: other)
        #expect(presence?.chatID == other && presence?.flag == false, "presence named its chat by the channel")
        #expect(legacy(#"{"type":"chat_updated","chat_id":"\#(chat)"}"#) == EventEnvelope(.chatUpdated, chatID: Self.chat))
        #expect(legacy(#"{"type":"member_added","chat_id":"\#(chat)","user_id":"\#(user)","last_seq":9}"#) == EventEnvelope(.memberAdded, chatID: Self.chat, userID: Self.user, seq: 9))
        #expect(legacy(#"{"type":"member_removed","chat_id":"\#(chat)","user_id":"\#(user)"}"#) == EventEnvelope(.memberRemoved, chatID: Self.chat, userID: Self.user))
        // what it cannot route is nil, never a guess (nor a seq whose successor overflows)
        for bad in [
            #"{"message":{"chat_id":"\#(chat)","seq":9223372036854775807},"type":"message"}"#, #"{"type":"read","chat_id":"\#(chat)","seq":2}"#,
            #"{"type":"presence","user_id":"\#(user)","online":true}"#, #"{"type":"reaction"}"#, "[1]", "not json", "P1 read - - 1 -\n{}",
        ] {
            #expect(legacy(bad) == nil, "\(bad)")
        }
    }

    @Test func streamEntriesKeepTheFieldsOfThePreviousVersion() {
        let (chat, user) = (Self.chat, Self.user)
        let fields = EventStreams.legacyFields(of: EventEnvelope(.message, chatID: chat, userID: user, seq: 12))
        #expect(fields.map(\.0) == ["type", "chat_id", "seq", "sender_id"])
        #expect(fields.map(\.1) == ["message.created", chat.uuidString.lowercased(), "12", user.uuidString.lowercased()])
        #expect(EventStreams.legacyFields(of: EventEnvelope(.read, chatID: chat, userID: user, seq: 1)).isEmpty)
    }

    @Test func aHeaderLongerThanAnyRealOneIsRefused() {
        let payload = "P1 message " + String(repeating: "x", count: 400) + "\n{}"
        #expect(throws: EventEnvelopeError.self) { try EventEnvelope.decode(ByteBuffer(string: payload)) }
    }
}
