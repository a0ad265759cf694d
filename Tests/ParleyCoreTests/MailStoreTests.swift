import Foundation
import ParleyCore
import ParleyTestSupport
import PostgresNIO
import Testing

/// The mail worker's storage against the real PostgreSQL: who gets a
/// digest, what it holds, and that a recorded digest is never mailed twice.
@Suite struct MailStoreTests {
    struct World {
        let mail: MailStore
        let chats: ChatStore
        let reader: UUID
        let sender: UUID
        let chat: UUID
        let postgres: PostgresClient
    }

    /// A group of `sender` and `reader` (who wants mail at a verified address).
    func withWorld(_ body: @escaping @Sendable (World) async throws -> Void) async throws {
        try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
            // the whole suite runs in parallel on two cores: a deadline for a busy machine
            let database = Database(client: postgres, deadline: .seconds(10), health: DatabaseHealth(logger: TestEnvironment.logger))
            let accounts = AccountStore(database: database, logger: TestEnvironment.logger)
            let chats = ChatStore(database: database, logger: TestEnvironment.logger)
            let tag = UUID().uuidString.prefix(8).lowercased()
            let reader = try #require(try await accounts.createUser(email: "reader-\(tag)@example.test", displayName: "Reader", passwordHash: "x")).id
            let sender = try #require(try await accounts.createUser(email: "sender-\(tag)@example.test", displayName: "Sender", passwordHash: "x")).id
            try await postgres.query("UPDATE users SET email_verified = true, email_notifications = true WHERE id = \(reader)", logger: TestEnvironment.logger)
            let chat = try await chats.createGroup(creator: sender, title: "Plans", memberIDs: [reader], isPublic: false).id
            try await body(World(mail: MailStore(database: database, logger: TestEnvironment.logger), chats: chats, reader: reader, sender: sender, chat: chat, postgres: postgres))
        }
    }

    func send(_ world: World, _ bodies: [String], from sender: UUID) async throws -> [Int64] {
        let outcomes = try await world.chats.send(
            batch: bodies.map { NewMessage(chatID: world.chat, senderID: sender, clientID: UUID(), body: $0) }, deadline: .seconds(10)
        )
        return try outcomes.map { try $0.get().message.seq }
    }

    @Test func recipientsAreTheMembersWhoHaveNotReadAndWantMail() async throws {
        try await self.withWorld { world in
            let seqs = try await self.send(world, ["hello"], from: world.sender)
            let message = MailStore.NewMessageRef(chatID: world.chat, seq: seqs[0], senderID: world.sender)
            #expect(try await world.mail.digestRecipients(of: [message, message]) == [world.reader])
            #expect(try await world.mail.digestRecipients(of: []) == [])
            // read it: nobody left
            _ = try await world.chats.markRead(chatID: world.chat, userID: world.reader, seq: seqs[0])
            #expect(try await world.mail.digestRecipients(of: [message]) == [])
            // an unverified address gets nothing
            #expect(try await world.mail.digestAddress(of: world.reader)?.name == "Reader")
            try await world.postgres.query("UPDATE users SET email_verified = false WHERE id = \(world.reader)", logger: TestEnvironment.logger)
            #expect(try await world.mail.digestAddress(of: world.reader) == nil)
            #expect(try await world.mail.digestAddress(of: UUID()) == nil)
        }
    }

    @Test func chatSettingsDecideWhatNotifies() async throws {
        try await self.withWorld { world in
            func settings(_ notify: NotifyLevel?, muted: Date??) async throws {
                _ = try await world.chats.updateSettings(chatID: world.chat, userID: world.reader, mutedUntil: muted, notify: notify)
            }
            func recipients(mentioning: Bool) async throws -> [UUID] {
                let sent = try await world.chats.send(
                    batch: [NewMessage(chatID: world.chat, senderID: world.sender, clientID: UUID(), body: mentioning ? "mention" : "plain", mentions: mentioning ? [world.reader] : [])],
                    deadline: .seconds(10)
                )
                let seq = try sent[0].get().message.seq
                return try await world.mail.digestRecipients(of: [MailStore.NewMessageRef(chatID: world.chat, seq: seq, senderID: world.sender)])
            }
            let later = Date().addingTimeInterval(3600), earlier = Date().addingTimeInterval(-3600)
            // (notify, muted until) → (a plain message notifies, a mention notifies)
            let cases: [(NotifyLevel, Date?, Bool, Bool)] = [
                (.all, nil, true, true), (.all, later, false, true), (.all, earlier, true, true),
                (.mentions, nil, false, true), (.mentions, later, false, true), (.nothing, nil, false, false), (.nothing, later, false, false),
            ]
            for (notify, muted, plain, mention) in cases {
                try await settings(notify, muted: .some(muted))
                #expect(try await recipients(mentioning: false) == (plain ? [world.reader] : []), "\(notify) \(String(describing: muted)): a plain message")
                #expect(try await recipients(mentioning: true) == (mention ? [world.reader] : []), "\(notify) \(String(describing: muted)): a mention")
            }
            // the digest holds only what notifies: with `mentions`, the mentions
            try await settings(.mentions, muted: .some(nil))
            let digest = try #require(try await world.mail.unreadChats(of: world.reader).first)
            #expect(digest.messages.map(\.body) == Array(repeating: "mention", count: 5), "the newest five mentions, no plain message")
            #expect(digest.unread == 14, "the count is of every unread message")
            try await settings(.nothing, muted: nil)
            #expect(try await world.mail.unreadChats(of: world.reader).isEmpty, "nothing of a chat set to none")
            // a field left out is kept; a non-member has no settings to change
            let kept = try await world.chats.updateSettings(chatID: world.chat, userID: world.reader, mutedUntil: .some(later), notify: nil)
            #expect(kept.notify == .nothing)
            await #expect(throws: ChatError.self) { try await world.chats.updateSettings(chatID: world.chat, userID: UUID(), mutedUntil: nil, notify: .all) }
        }
    }

    @Test func aDigestHoldsTheNewestUnreadMessagesOfOthersAndIsRecordedOnce() async throws {
        try await self.withWorld { world in
            // sending marks the sender's own message read: the reader's comes first
            _ = try await self.send(world, ["my own"], from: world.reader)
            let seqs = try await self.send(world, (1...7).map { "m\($0)" }, from: world.sender)
            _ = try await world.chats.delete(chatID: world.chat, seq: seqs[6], actor: world.sender)
            let chats = try await world.mail.unreadChats(of: world.reader)
            let digest = try #require(chats.first)
            #expect(chats.count == 1)
            #expect(digest.title == "Plans" && digest.previouslyMailed == nil && digest.throughSeq == 8 && digest.unread == 7)
            // the newest five of others, oldest first: m7 is deleted
            #expect(digest.messages.map(\.body) == ["m2", "m3", "m4", "m5", "m6"])
            #expect(digest.messages.allSatisfy { $0.sender == "Sender" })

            let key = "digest:test:\(UUID())"
            #expect(try await world.mail.recordDigest(key, to: world.reader, chats: chats))
            #expect(try await world.mail.recordDigest(key, to: world.reader, chats: chats) == false, "the same digest is recorded once")
            #expect(try await world.mail.alreadySent(key))
            #expect(try await world.mail.unreadChats(of: world.reader).isEmpty, "what a digest covered is not mailed again")

            // not mailed after all: forgotten, and the next attempt holds the same range
            try await world.mail.forgetDigest(key, to: world.reader, chats: chats)
            #expect(try await world.mail.alreadySent(key) == false)
            #expect(try await world.mail.unreadChats(of: world.reader).first?.throughSeq == 8)

            // a later digest starts after the last one
            #expect(try await world.mail.recordDigest(key, to: world.reader, chats: chats))
            _ = try await self.send(world, ["m9"], from: world.sender)
            let later = try #require(try await world.mail.unreadChats(of: world.reader).first)
            #expect(later.previouslyMailed == 8 && later.messages.map(\.body) == ["m9"])
        }
    }

    @Test func sentMailsAreRecordedByKey() async throws {
        try await self.withWorld { world in
            let key = "otp:test:\(UUID())"
            #expect(try await world.mail.alreadySent(key) == false)
            try await world.mail.recordSent(key, kind: "otp")
            try await world.mail.recordSent(key, kind: "otp")
            #expect(try await world.mail.alreadySent(key))
        }
    }
}
