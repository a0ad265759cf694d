import Foundation
import NIOCore
import ParleyCore
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
            EventEnvelope(kind, chatID: Self.chat, userID: Self.user, seq: 9_223_372_036_854_775_807, flag: true, frame: frame),
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
        #expect(decoded.frameText == "{\"type\":\"read\"}")
    }

    @Test(arguments: [
        ("{\"type\":\"message\"}", EventEnvelopeError.Code.notAnEnvelope),  // the JSON of the previous version
        ("", .notAnEnvelope),
        ("P1 message - - - -", .malformedHeader),  // no newline
        ("P2 message - - - -\n{}", .unsupportedVersion),
        ("Px message - - - -\n", .malformedHeader),
        ("P1 reaction - - - -\n{}", .unknownKind),
        ("P1 message - - -\n", .malformedHeader),  // five fields
        ("P1 message - - - - extra\n", .malformedHeader),
        ("P1 message not-a-uuid - 1 -\n", .malformedHeader),
        ("P1 message - - seven -\n", .malformedHeader),
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

    @Test func aHeaderLongerThanAnyRealOneIsRefused() {
        let payload = "P1 message " + String(repeating: "x", count: 400) + "\n{}"
        #expect(throws: EventEnvelopeError.self) { try EventEnvelope.decode(ByteBuffer(string: payload)) }
    }
}
