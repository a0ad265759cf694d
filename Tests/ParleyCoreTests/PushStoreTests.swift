import Crypto
import Foundation
import ParleyCore
import ParleyTestSupport
import PostgresNIO
import Testing

/// Who the push worker pushes, against the real PostgreSQL: one read of the
/// stream holds several messages of several chats (the worker gathers them),
/// and `PushStore.targets` must answer for each exactly the subscriptions of
/// the members it notifies.
@Suite struct PushStoreTests {
    @Test func aReadOfSeveralChatsTargetsTheSubscribedMembersEachMessageNotifies() async throws {
        try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
            let logger = TestEnvironment.logger
            let database = Database(client: postgres, deadline: .seconds(10), health: DatabaseHealth(logger: logger))
            let accounts = AccountStore(database: database, logger: logger)
            let chats = ChatStore(database: database, logger: logger)
            let push = PushStore(database: database, logger: logger)
            let tag = UUID().uuidString.prefix(8).lowercased()
            func user(_ name: String) async throws -> UUID {
                try #require(try await accounts.createUser(email: "\(name)-\(tag)@example.test", displayName: name, passwordHash: "x")).id
            }
            func subscribe(_ userID: UUID) async throws -> (subscription: UUID, session: UUID) {
                let session = try await accounts.createSession(userID: userID, refreshHash: Array(UUID().uuidString.utf8), lifetime: .seconds(3600), userAgent: nil)
                let point = P256.KeyAgreement.PrivateKey().publicKey.x963Representation
                let keys = try #require(WebPush.SubscriptionKeys(p256dh: Secrets.base64URL(point), auth: Secrets.base64URL(Data(repeating: 7, count: 16))))
                let outcome = try await push.subscribe(userID: userID, sessionID: session, endpoint: "https://push.example.test/\(tag)/\(UUID())", keys: keys)
                guard case .subscribed(let id) = outcome else { Issue.record("not subscribed: \(outcome)"); throw CancellationError() }
                return (id, session)
            }
            let sender = try await user("sender"), reader = try await user("reader"), quiet = try await user("quiet")
            let unsubscribed = try await user("unsubscribed"), caughtUp = try await user("caughtup")
            let readerDevice = try await subscribe(reader).subscription, quietDevice = try await subscribe(quiet).subscription
            _ = try await subscribe(sender)
            _ = try await subscribe(caughtUp)
            // a second device of the reader's whose session expired: nothing goes there
            let expired = try await subscribe(reader)
            try await postgres.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = \(expired.session)", logger: logger)
            let large = try await chats.createGroup(creator: sender, title: "Large", memberIDs: [reader, quiet, unsubscribed, caughtUp], isPublic: false).id
            let other = try await chats.createGroup(creator: reader, title: "Other", memberIDs: [sender, quiet], isPublic: false).id
            _ = try await chats.updateSettings(chatID: large, userID: quiet, mutedUntil: nil, notify: .mentions)

            func send(_ chat: UUID, _ from: UUID, _ body: String, mentions: [UUID] = []) async throws -> MailStore.NewMessageRef {
                let sent = try await chats.send(
                    batch: [NewMessage(chatID: chat, senderID: from, clientID: UUID(), body: body, mentions: mentions)], deadline: .seconds(10)
                )
                return MailStore.NewMessageRef(chatID: chat, seq: try sent[0].get().message.seq, senderID: from)
            }
            let plain = try await send(large, sender, "plain")
            let mention = try await send(large, sender, "@quiet look", mentions: [quiet])
            let deleted = try await send(large, sender, "oops")
            _ = try await chats.delete(chatID: deleted.chatID, seq: deleted.seq, actor: sender)
            let fromReader = try await send(other, reader, "from the reader")
            // caughtUp read the large chat up to the mention
            _ = try await chats.markRead(chatID: large, userID: caughtUp, seq: mention.seq)

            let targets = try await push.targets(of: [plain, mention, deleted, fromReader])
            let got = Set(targets.map { "\($0.chatID == large ? "large" : "other")/\($0.seq)/\($0.subscription.userID)/\($0.mentioned)" })
            let want: Set<String> = [
                "large/\(plain.seq)/\(reader)/false",  // notify: all
                "large/\(mention.seq)/\(reader)/false",
                "large/\(mention.seq)/\(quiet)/true",  // notify: mentions
                "other/\(fromReader.seq)/\(sender)/false",  // the sender of the large chat is a reader here
                "other/\(fromReader.seq)/\(quiet)/false",
            ]
            #expect(got == want, "not the sender, not without a subscription, not what was read, not a deleted message")
            let order = targets.map { "\($0.chatID.uuidString.lowercased())/\(String(format: "%012lld", $0.seq))" }
            #expect(order == order.sorted(), "by chat, then seq")
            #expect(!targets.contains { $0.subscription.id == expired.subscription })
            let first = try #require(targets.first { $0.subscription.id == readerDevice && $0.seq == plain.seq })
            #expect(first.preview == "plain" && first.senderID == sender && first.senderName == "sender" && !first.direct)
            #expect(targets.contains { $0.subscription.id == quietDevice })

            // nobody once the chat is read
            _ = try await chats.markRead(chatID: large, userID: reader, seq: mention.seq)
            _ = try await chats.markRead(chatID: large, userID: quiet, seq: mention.seq)
            #expect(try await push.targets(of: [plain, mention]).isEmpty)
            #expect(try await push.targets(of: []).isEmpty)
        }
    }
}
