import Foundation
import HiredisNIO
import NIOCore
import ParleyCore
@testable import ParleyMailer
import Testing
import ParleyChat

/// The mail worker reads new messages from `events:messages` entries: the
/// envelope header gateways append, and the fields of the previous version
/// (entries still pending during an upgrade).
@Suite struct DigestEventTests {
    func entry(_ fields: [String: String]) -> RedisStreamEntry {
        RedisStreamEntry(id: "1-0", fields: fields.mapValues { ByteBuffer(string: $0) })
    }

    @Test func newMessagesAreReadFromBothFormats() throws {
        let (chat, sender) = (UUID(), UUID())
        let header = EventEnvelope(.message, chatID: chat, userID: sender, seq: 5).header
        let current = try DigestWorker.newMessage(self.entry([EventStreams.envelopeField: header]))
        #expect(current?.chatID == chat && current?.seq == 5 && current?.senderID == sender)
        let legacy = try DigestWorker.newMessage(self.entry([
            "type": "message.created", "chat_id": chat.uuidString.lowercased(), "seq": "6", "sender_id": sender.uuidString.lowercased(),
        ]))
        #expect(legacy?.chatID == chat && legacy?.seq == 6 && legacy?.senderID == sender)
        // what gateways append now: both, and the envelope wins
        let both = try DigestWorker.newMessage(self.entry([
            EventStreams.envelopeField: header, "type": "message.created", "chat_id": UUID().uuidString, "seq": "99", "sender_id": UUID().uuidString,
        ]))
        #expect(both?.seq == 5 && both?.chatID == chat)
    }

    @Test func anEnvelopeOfAnotherVersionIsAnErrorToCount() {
        #expect(throws: EventEnvelopeError.self) { try DigestWorker.newMessage(self.entry([EventStreams.envelopeField: "P9 message - - 1 -"])) }
    }

    @Test func anythingElseIsSkipped() throws {
        for fields in [
            [EventStreams.envelopeField: EventEnvelope(.read, chatID: UUID(), userID: UUID(), seq: 1).header],
            [EventStreams.envelopeField: "P1 message - - 1 -"],  // no chat or sender
            ["type": "message.updated", "chat_id": UUID().uuidString, "seq": "1", "sender_id": UUID().uuidString],
            [:],
        ] {
            #expect(try DigestWorker.newMessage(self.entry(fields)) == nil, "\(fields)")
        }
    }
}
