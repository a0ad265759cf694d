import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import PostgresNIO
import Testing
import ParleyChat

/// Sends committed together: `ChatStore.send(batch:)` against the real
/// PostgreSQL, and `MessageWriter` grouping concurrent sends.
@Suite struct GroupCommitTests {
    typealias User = ChatsTests.User

    func withStore(_ body: @escaping @Sendable (APITestClient, ChatStore) async throws -> Void) async throws {
        try await GatewayTestSupport.liveApp().test(.live) { client in
            try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                try await body(APITestClient(client), ChatStore(database: Database(client: postgres, health: DatabaseHealth(logger: TestEnvironment.logger)), logger: TestEnvironment.logger))
            }
        }
    }

    func uuid(_ string: String) -> UUID { UUID(uuidString: string)! }

    @Test func aBatchTakesSeqsInOrderAndRefusesOnlyItsBadSends() async throws {
        try await self.withStore { api, store in
            let chats = ChatsTests()
            let (a, b, c) = (try await chats.user(api, "Ann"), try await chats.user(api, "Ben"), try await chats.user(api, "Cid"))
            let one = self.uuid(try await chats.group(api, owner: a, members: [b]))
            let two = self.uuid(try await chats.group(api, owner: b, members: [a]))
            let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]
            let uploaded = try await api.client.execute(
                uri: "/v1/attachments", method: .post, headers: [.authorization: "Bearer \(a.token)", .contentType: "image/png"], body: ByteBuffer(bytes: png)
            ) { APIResponse(status: Int($0.status.code), headers: $0.headers, body: Data($0.body.readableBytesView)) }
            let file = self.uuid(try #require(uploaded.json["id"] as? String))
            let (ann, ben, cid) = (self.uuid(a.id), self.uuid(b.id), self.uuid(c.id))
            let k1 = UUID()

            let outcomes = try await store.send(batch: [
                NewMessage(chatID: one, senderID: ann, clientID: k1, body: "first"),  // one #1
                NewMessage(chatID: two, senderID: ben, clientID: UUID(), body: "other chat"),  // two #1
                NewMessage(chatID: one, senderID: cid, clientID: UUID(), body: "not a member"),
                NewMessage(chatID: one, senderID: ann, clientID: k1, body: "resent in the same batch"),
                NewMessage(chatID: one, senderID: ben, clientID: UUID(), body: "reply", replyToSeq: 1),  // one #2, replies to #1 of this batch
                NewMessage(chatID: one, senderID: ann, clientID: UUID(), body: "reply to the future", replyToSeq: 3),
                NewMessage(chatID: two, senderID: ann, clientID: UUID(), body: nil, attachmentIDs: [file]),  // two #2
                NewMessage(chatID: one, senderID: ben, clientID: UUID(), body: "not my file", attachmentIDs: [file]),
                NewMessage(chatID: one, senderID: ann, clientID: UUID(), body: "twice", attachmentIDs: [file, file]),
                NewMessage(chatID: UUID(), senderID: ann, clientID: UUID(), body: "no such chat"),
            ], deadline: .seconds(10))
            #expect(outcomes.count == 10)
            func stored(_ index: Int) -> (seq: Int64, created: Bool, id: UUID)? {
                guard case .success(let result) = outcomes[index] else { return nil }
                return (result.message.seq, result.created, result.message.id)
            }
            func refusal(_ index: Int) -> ChatError? {
                guard case .failure(let error) = outcomes[index] else { return nil }
                return error
            }
            #expect(stored(0)?.seq == 1 && stored(0)?.created == true)
            #expect(stored(1)?.seq == 1 && stored(1)?.created == true)
            #expect(refusal(2) == .chatNotFound)
            #expect(stored(3)?.id == stored(0)?.id && stored(3)?.created == false)
            #expect(stored(4)?.seq == 2)
            #expect(refusal(5) == .invalidReply)
            #expect(stored(6)?.seq == 2)
            if case .success(let result) = outcomes[6] {
                #expect(result.message.body == nil)
                #expect(result.message.attachments.map(\.id) == [file])
            }
            #expect(refusal(7) == .invalidAttachments)
            #expect(refusal(8) == .invalidAttachments)
            #expect(refusal(9) == .chatNotFound)

            // a resend of a message stored by an earlier batch returns it, with its attachments
            let withFile = try #require(try? outcomes[6].get().message)
            let again = try await store.send(
                batch: [
                    NewMessage(chatID: one, senderID: ann, clientID: k1, body: "late resend"),
                    NewMessage(chatID: two, senderID: ann, clientID: withFile.clientID, body: "late resend", attachmentIDs: []),
                ], deadline: .seconds(10))
            #expect(try again[0].get().message.id == stored(0)?.id)
            #expect(try again[0].get().created == false)
            #expect(try again[0].get().message.body == "first")
            #expect(try again[1].get().message.id == withFile.id)
            #expect(try again[1].get().message.attachments.map(\.id) == [file])
            #expect(try again[1].get().message.body == nil)

            let history = try await store.messages(chatID: two, before: nil, after: 0, limit: 10).messages
            #expect(history.map(\.seq) == [1, 2])
            #expect(history.last?.attachments.map(\.id) == [file])
            // what the batch answered is what was stored
            #expect(history.last?.createdAt == withFile.createdAt)
            #expect(history.first?.id == stored(1)?.id)
            let first = try await api.call(.get, "/v1/chats/\(one)", token: a.token)
            #expect(first.json["last_seq"] as? Int == 2)
            // the sender has read what they sent; the other member has not
            #expect(first.json["unread_count"] as? Int == 1)
            #expect((try await api.call(.get, "/v1/chats/\(one)", token: b.token)).json["unread_count"] as? Int == 0)
        }
    }

    @Test func concurrentBatchesOverTheSameChatsNeitherDeadlockNorLeaveGaps() async throws {
        try await self.withStore { api, store in
            let chats = ChatsTests()
            let owner = try await chats.user(api, "Owner")
            let member = try await chats.user(api, "Member")
            var ids: [UUID] = []
            for _ in 0..<4 { ids.append(self.uuid(try await chats.group(api, owner: owner, members: [member]))) }
            let senders = [self.uuid(owner.id), self.uuid(member.id)]
            let batches = 12, perBatch = 40
            let chatIDs = ids
            try await withThrowingTaskGroup(of: Void.self) { group in
                for batch in 0..<batches {
                    group.addTask {
                        // each batch walks the chats in its own order
                        let order = batch % 2 == 0 ? chatIDs : chatIDs.reversed()
                        let sends = (0..<perBatch).map { i in
                            NewMessage(chatID: order[i % order.count], senderID: senders[(batch + i) % 2], clientID: UUID(), body: "b\(batch) m\(i)")
                        }
                        let outcomes = try await store.send(batch: sends, deadline: .seconds(10))
                        for outcome in outcomes { #expect(try outcome.get().created) }
                    }
                }
                try await group.waitForAll()
            }
            for chat in chatIDs {
                let all = try await store.messages(chatID: chat, before: nil, after: 0, limit: 1000).messages
                #expect(all.map(\.seq) == Array(1...Int64(batches * perBatch / chatIDs.count)))
            }
        }
    }

    @Test func concurrentSendsShareTransactions() async throws {
        try await self.withStore { api, store in
            let chats = ChatsTests()
            let owner = try await chats.user(api, "Owner")
            let chat = self.uuid(try await chats.group(api, owner: owner, members: []))
            let dependencies = try await GatewayTestSupport.dependencies()
            let writer = MessageWriter(store: store, publisher: dependencies.chats.publisher)
            let stored = CallCounter()
            let count = 200
            try await whileRunning({ await writer.run() }) {
            let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<count {
                    group.addTask {
                        let result = try await writer.send(
                            NewMessage(chatID: chat, senderID: self.uuid(owner.id), clientID: UUID(), body: "m\(i)"), logger: TestEnvironment.logger
                        ) { _ in stored.increment() }
                        #expect(result.created)
                        return result.message.seq
                    }
                }
                return try await group.reduce(into: [Int64]()) { $0.append($1) }
            }
            #expect(seqs.sorted() == Array(1...Int64(count)))
            #expect(stored.value == count)
            let written = writer.written
            #expect(written.sends == count)
            #expect(written.batches < count / 4, "\(written.batches) transactions for \(count) concurrent sends")

            // a send the store refuses fails alone
            await #expect(throws: ChatError.chatNotFound) {
                try await writer.send(NewMessage(chatID: UUID(), senderID: self.uuid(owner.id), clientID: UUID(), body: "x"), logger: TestEnvironment.logger) { _ in }
            }
            }
        }
    }

    @Test func aChatLockedTooLongAnswersUnavailableAndTheResendIsStoredOnce() async throws {
        try await self.withStore { api, _ in
            let chats = ChatsTests()
            let owner = try await chats.user(api, "Owner")
            let chat = try await chats.group(api, owner: owner, members: [])
            let clientID = UUID().uuidString.lowercased()
            // another session holds the chat's row lock for longer than the gateway waits (5 s)
            try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                try await postgres.withTransaction(logger: TestEnvironment.logger) { connection in
                    try await connection.query("SELECT 1 FROM chats WHERE id = \(UUID(uuidString: chat)!) FOR UPDATE", logger: TestEnvironment.logger)
                    let started = ContinuousClock.now
                    let refused = try await chats.send(api, chat, owner, "while locked", clientID: clientID)
                    #expect(refused.status == 503, "\(refused.text)")
                    #expect(refused.code == "unavailable")
                    #expect(ContinuousClock.now - started < .seconds(9), "the lock wait ends before the writer's own deadline")
                }
            }
            let stored = try await chats.send(api, chat, owner, "while locked", clientID: clientID)
            #expect(stored.status == 201, "\(stored.text)")
            #expect(try await chats.send(api, chat, owner, "while locked", clientID: clientID).status == 200)
            let page = try await api.call(.get, "/v1/chats/\(chat)/messages", token: owner.token)
            #expect((page.json["messages"] as? [[String: Any]])?.count == 1)
        }
    }
}

/// A thread-safe counter for callbacks.
final class CallCounter: Sendable {
    private let count = Mutex(0)
    func increment() { self.count.withLock { $0 += 1 } }
    var value: Int { self.count.withLock { $0 } }
}

import Synchronization
