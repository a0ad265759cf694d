import Foundation
import HiredisNIO
import NIOCore
import ParleyCore
import ParleyTestSupport
@testable import ParleyChat
import Testing

/// What the publisher puts on each channel: envelopes whose headers say
/// what receiving gateways route by, around the frames clients receive.
@Suite struct ChatEventPublisherTests {
    let chat = UUID()
    let user = UUID()

    func frame(_ envelope: EventEnvelope) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(envelope.frame.readableBytesView)) as? [String: Any])
    }

    /// Each delivery as a receiver would read it off the wire.
    func delivered(_ event: ChatEvent) throws -> [(channel: String, envelope: EventEnvelope)] {
        try ChatEventPublisher.deliveries(event).map { ($0.0, try EventEnvelope.decode($0.1.encoded())) }
    }

    @Test func aNewMessageCarriesItsRouteAndTheClientFrame() throws {
        let message = MessageRecord(
            id: UUID(), chatID: self.chat, seq: 7, senderID: self.user, clientID: UUID(), body: "hello\nworld", attachments: [],
            replyToSeq: nil, createdAt: Date(), editedAt: nil, deletedAt: nil
        )
        let deliveries = try self.delivered(.messageCreated(message))
        #expect(deliveries.count == 1)
        let (channel, envelope) = try #require(deliveries.first)
        #expect(channel == "chat:{\(self.chat.uuidString.lowercased())}")
        #expect(envelope.kind == .message && envelope.chatID == self.chat && envelope.seq == 7 && envelope.userID == self.user)
        let frame = try self.frame(envelope)
        #expect(frame["type"] as? String == "message")
        let body = try #require(frame["message"] as? [String: Any])
        #expect(body["seq"] as? Int == 7 && body["body"] as? String == "hello\nworld" && body["chat_id"] as? String == self.chat.uuidString.lowercased())

        var deleted = message
        deleted.deletedAt = Date()
        let update = try #require(try self.delivered(.messageUpdated(deleted)).first?.envelope)
        #expect(update.kind == .messageUpdated && update.seq == 7)
        #expect(try self.frame(update)["type"] as? String == "message_updated")
    }

    @Test func membershipChangesGoToTheUserAndTheChat() throws {
        let added = try self.delivered(.memberAdded(chatID: self.chat, userID: self.user, lastSeq: 12))
        #expect(added.map(\.channel) == ["user:{\(self.user.uuidString.lowercased())}", "chat:{\(self.chat.uuidString.lowercased())}"])
        #expect(added[0].envelope == EventEnvelope(.memberAdded, chatID: self.chat, userID: self.user, seq: 12))
        #expect(added[1].envelope == EventEnvelope(.chatUpdated, chatID: self.chat))
        let removed = try self.delivered(.memberRemoved(chatID: self.chat, userID: self.user))
        #expect(removed[0].envelope == EventEnvelope(.memberRemoved, chatID: self.chat, userID: self.user))
    }

    @Test func readsTypingAndPresenceCarryTheirFieldsInTheHeader() throws {
        let read = try #require(try self.delivered(.read(chatID: self.chat, userID: self.user, seq: 3)).first?.envelope)
        #expect(read.kind == .read && read.seq == 3 && read.userID == self.user)
        #expect(try self.frame(read)["seq"] as? Int == 3)
        let typing = try #require(try self.delivered(.typing(chatID: self.chat, userID: self.user, active: false)).first?.envelope)
        #expect(typing.kind == .typing && typing.flag == false)
        #expect(try self.frame(typing)["active"] as? Bool == false)
        let other = UUID()
        let presence = try self.delivered(.presence(userID: self.user, online: true, chatIDs: [self.chat, other]))
        #expect(presence.map(\.envelope.chatID) == [self.chat, other], "one per chat, each naming its chat")
        #expect(presence.allSatisfy { $0.envelope.kind == .presence && $0.envelope.flag == true && $0.envelope.userID == self.user })
        #expect(try self.frame(presence[0].envelope)["online"] as? Bool == true)
    }

    @Test func aReactionIsTheFrameOfPROTOCOL() throws {
        let delivered = try self.delivered(.reaction(chatID: self.chat, seq: 4, userID: self.user, emoji: "👍🏽", added: false))
        #expect(delivered.map(\.channel) == ["chat:{\(self.chat.uuidString.lowercased())}"])
        let envelope = try #require(delivered.first?.envelope)
        #expect(envelope.kind == .reaction && envelope.seq == 4 && envelope.userID == self.user && envelope.flag == false)
        let frame = try self.frame(envelope)
        #expect(frame["type"] as? String == "reaction" && frame["emoji"] as? String == "👍🏽" && frame["added"] as? Bool == false)
        #expect(frame["chat_id"] as? String == self.chat.uuidString.lowercased() && frame["seq"] as? Int == 4)
        #expect(frame["user_id"] as? String == self.user.uuidString.lowercased())
    }

    /// Known (a new message, a tombstone: none for everyone) they are in the
    /// frame; not known for every member (an edit) they are left out.
    @Test func reactionsAreInTheFrameWhenKnownForEveryoneAndLeftOutOtherwise() throws {
        var message = MessageRecord(NewMessage(chatID: self.chat, senderID: self.user, clientID: UUID(), body: "hi"), seq: 1)
        message.reactions = []
        let created = try #require(try self.delivered(.messageCreated(message)).first?.envelope)
        #expect((try self.frame(created)["message"] as? [String: Any])?["reactions"] as? [Any] != nil)
        message.reactions = nil
        let updated = try #require(try self.delivered(.messageUpdated(message)).first?.envelope)
        #expect((try self.frame(updated)["message"] as? [String: Any])?.keys.contains("reactions") == false)
    }
}

/// What goes on `events:messages`, against the real Redis.
@Suite struct EventStreamTests {
    @Test func readPositionsGoOnTheStreamOnlyWhenPushIsConfigured() async throws {
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        defer { Task { await redis.shutdown() } }
        for pushEnabled in [false, true] {
            let publisher = ChatEventPublisher(redis: redis, pushEnabled: pushEnabled)
            let chat = UUID(), user = UUID()
            await publisher.publish([.read(chatID: chat, userID: user, seq: 3), .memberRemoved(chatID: chat, userID: user)], logger: TestEnvironment.logger)
            // other tests append too: this chat's entries among the newest
            let kinds = try await redis.xrange(EventStreams.messages, count: 500, reverse: true).compactMap { entry -> EventEnvelope.Kind? in
                guard let header = entry[EventStreams.envelopeField], let envelope = try? EventEnvelope.decode(header: header), envelope.chatID == chat else { return nil }
                return envelope.kind
            }
            #expect(Set(kinds) == (pushEnabled ? [.read, .memberRemoved] : [.memberRemoved]), "push \(pushEnabled): \(kinds)")
        }
    }
}
