import Foundation
import ParleyCore
import ParleyTestSupport
import PostgresNIO
import Testing

/// A message committed but never published (its gateway died in between):
/// the gateways read the gap from PostgreSQL once per chat for all of their
/// sockets, and every socket gets every message once, in order.
@Suite(.serialized) struct GapFillTests {
    /// Commits a message the way a send does, without the publish that would follow.
    static func commitSilently(_ chat: String, sender: String, body: String) async throws -> Int {
        try await withPostgresClient(try TestEnvironment.databaseSettings()) { client in
            let chatID = UUID(uuidString: chat)!, senderID = UUID(uuidString: sender)!
            let rows = try await client.query(
                """
                WITH c AS (UPDATE chats SET last_seq = last_seq + 1 WHERE id = \(chatID) RETURNING last_seq)
                INSERT INTO messages (chat_id, seq, id, sender_id, client_id, body)
                SELECT \(chatID), last_seq, \(UUID.v7()), \(senderID), \(UUID()), \(body) FROM c RETURNING seq
                """,
                logger: TestEnvironment.logger
            )
            var seq = 0
            for try await value in rows.decode(Int64.self) { seq = Int(value) }
            return seq
        }
    }

    static func counter(_ name: String, on gateway: GatewayProcess) async throws -> Double {
        let text = String(decoding: try await HTTP.get("\(gateway.operationsURL)/metrics").body, as: UTF8.self)
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
    }

    @Test func aGapIsReadOnceForEveryLocalSocketAndDeliveredInOrder() async throws {
        let (a, b) = try await twoGateways()
        let alice = try await E2EUser.register(on: a, name: "Alice")
        let members = [try await E2EUser.register(on: b, name: "Bob"), try await E2EUser.register(on: b, name: "Cat"), try await E2EUser.register(on: b, name: "Dan")]
        let chat = try await alice.group(on: a, members: members)
        var sockets: [TestWebSocket] = []
        for member in members { sockets.append(try await member.connect(b)) }
        let first = try await alice.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "before"])
        let firstSeq = try #require(first.json["seq"] as? Int)
        for socket in sockets { _ = try await socket.next("message") { $0.messageSeq == firstSeq } }
        let filledBefore = try await Self.counter("parley_message_gaps_filled_total", on: b)
        let openBefore = try await Self.counter("parley_message_gaps_left_open_total", on: b)

        let silent = try await Self.commitSilently(chat, sender: alice.id, body: "never published")
        let after = try await alice.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "after"])
        let afterSeq = try #require(after.json["seq"] as? Int)
        #expect(silent == firstSeq + 1 && afterSeq == firstSeq + 2)

        for socket in sockets {
            let missing = try await socket.next("message") { $0.messageSeq != nil && $0.messageSeq! > firstSeq }
            #expect(missing.messageSeq == silent, "the gap first")
            #expect((missing["message"] as? [String: Any])?["body"] as? String == "never published")
            #expect(try await socket.next("message") { $0.messageSeq != nil && $0.messageSeq! > silent }.messageSeq == afterSeq)
        }
        try await eventually { try await Self.counter("parley_message_gaps_filled_total", on: b) == filledBefore + 1 }
        #expect(try await Self.counter("parley_message_gaps_left_open_total", on: b) == openBefore, "read once, by the gateway, for three sockets")
        for socket in sockets { await socket.close() }
    }
}
