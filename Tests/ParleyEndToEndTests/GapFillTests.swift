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

    /// Alice on `a`, in a group with three members each with a socket on
    /// `b`, and a first message that every socket has; or, `quiet`, no
    /// message at all: `b` has never seen one of the chat (firstSeq 0), and
    /// each socket is known to be registered by a pong.
    static func groupWatchedFrom(
        _ b: GatewayProcess, sentFrom a: GatewayProcess, quiet: Bool = false
    ) async throws -> (alice: E2EUser, chat: String, sockets: [TestWebSocket], firstSeq: Int) {
        let alice = try await E2EUser.register(on: a, name: "Alice")
        let members = [try await E2EUser.register(on: b, name: "Bob"), try await E2EUser.register(on: b, name: "Cat"), try await E2EUser.register(on: b, name: "Dan")]
        let chat = try await alice.group(on: a, members: members)
        var sockets: [TestWebSocket] = []
        for member in members { sockets.append(try await member.connect(b)) }
        if quiet {
            for socket in sockets {
                try await socket.send(["type": "ping", "ref": "registered"])
                _ = try await socket.next("pong")
            }
            return (alice, chat, sockets, 0)
        }
        let first = try await alice.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "before"])
        let firstSeq = try #require(first.json["seq"] as? Int)
        for socket in sockets { _ = try await socket.next("message") { $0.messageSeq == firstSeq } }
        return (alice, chat, sockets, firstSeq)
    }

    @Test func aGapIsReadOnceForEveryLocalSocketAndDeliveredInOrder() async throws {
        let (a, b) = try await twoGateways()
        let (alice, chat, sockets, firstSeq) = try await Self.groupWatchedFrom(b, sentFrom: a)
        let filledBefore = try await Self.counter("parley_message_gaps_filled_total", on: b)
        let openBefore = try await Self.counter("parley_message_gaps_left_open_total", on: b)
        let ownBefore = try await Self.counter("parley_socket_catch_up_reads_total", on: b)

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
        #expect(try await Self.counter("parley_socket_catch_up_reads_total", on: b) == ownBefore, "and by none of the sockets")
        for socket in sockets { await socket.close() }
    }

    /// Messages sent while Redis is down never reach the other gateway's
    /// subscriptions: once they are back, that gateway reads what each chat
    /// missed once for all of its sockets, and the sockets read nothing
    /// themselves; `quiet`, for a chat with no message since the gateway
    /// started (remembered from its sockets' registration).
    @Test(arguments: [false, true])
    func whatAChatMissedDuringARedisOutageIsReadOnceForEveryLocalSocket(quiet: Bool) async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let (a, b) = try await twoGateways(redisURL: redis.url)
        let (alice, chat, sockets, firstSeq) = try await Self.groupWatchedFrom(b, sentFrom: a, quiet: quiet)
        let filledBefore = try await Self.counter("parley_message_gaps_filled_total", on: b)
        let ownBefore = try await Self.counter("parley_socket_catch_up_reads_total", on: b)

        await redis.kill()
        var missed: [Int] = []
        for body in ["during 1", "during 2"] {
            let sent = try await alice.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body])
            #expect(sent.status == 201, "sends are stored while Redis is down")
            missed.append(try #require(sent.json["seq"] as? Int))
        }
        #expect(missed == [firstSeq + 1, firstSeq + 2])
        try await redis.start()

        for socket in sockets {
            for seq in missed {
                #expect(try await socket.next("message") { $0.messageSeq != nil && $0.messageSeq! > firstSeq }.messageSeq == seq, "each once, in order")
            }
        }
        try await eventually { try await Self.counter("parley_message_gaps_filled_total", on: b) == filledBefore + 1 }
        // live delivery goes on; by then every socket has taken its catch-up
        let after = try await alice.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "after"])
        let afterSeq = try #require(after.json["seq"] as? Int)
        for socket in sockets {
            #expect(try await socket.next("message") { $0.messageSeq != nil && $0.messageSeq! > missed[1] }.messageSeq == afterSeq)
        }
        #expect(try await Self.counter("parley_socket_catch_up_reads_total", on: b) == ownBefore, "read once, by the gateway, for three sockets")
        // what the counter counts: a resume from further back is a socket's own read
        let resumed = try await alice.connect(b, resume: [chat: firstSeq])
        #expect(try await resumed.next("message") { $0.messageSeq != nil }.messageSeq == missed[0])
        try await eventually { try await Self.counter("parley_socket_catch_up_reads_total", on: b) == ownBefore + 1 }
        for socket in sockets + [resumed] { await socket.close() }
        await redis.stop()
    }
}
