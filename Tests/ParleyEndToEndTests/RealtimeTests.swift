import Foundation
import HiredisNIO
import NIOCore
import ParleyTestSupport
import Testing

@Suite struct RealtimeTests {
    @Test func aBlockOnOneInstanceStopsSendsOnTheOther() async throws {
        let (g1, g2) = try await twoGateways()
        let alice = try await E2EUser.register(on: g1, name: "Blocker")
        let bob = try await E2EUser.register(on: g2, name: "Blocked")
        let direct = try #require(try await alice.post(g1, "/v1/chats", ["kind": "direct", "user_id": bob.id]).json["id"] as? String)
        let alices = try await alice.connect(g1)
        let bobs = try await bob.connect(g2)
        #expect(try await HTTP.json("PUT", "\(g1.baseURL)/v1/me/blocks/\(bob.id)", token: alice.token).status == 204)
        // his typing is dropped (frames of one socket are handled in order: it is gone before the send is refused)
        try await bobs.send(["type": "typing", "chat_id": direct, "active": true])
        try await bobs.send(["type": "send", "ref": "b1", "chat_id": direct, "client_id": UUID().uuidString, "body": "let me in"])
        let refused = try await bobs.next("error") { $0["ref"] as? String == "b1" }
        #expect(refused["code"] as? String == "blocked")
        #expect(!bobs.isClosed, "a refused send leaves the socket open")
        // Alice still reaches Bob; after the unblock Bob reaches Alice, and nothing of the refused send ever arrives
        #expect(try await alice.post(g1, "/v1/chats/\(direct)/messages", ["client_id": UUID().uuidString, "body": "still here"]).status == 201)
        #expect(try await bobs.next("message").messageSeq == 1)
        #expect(try await HTTP.json("DELETE", "\(g1.baseURL)/v1/me/blocks/\(bob.id)", token: alice.token).status == 204)
        // unblocked, his typing shows again: published by the same instance on the same channel
        // as the dropped one and before his next message, so all of it is in by that message
        try await bobs.send(["type": "typing", "chat_id": direct, "active": false])
        try await bobs.send(["type": "send", "ref": "b2", "chat_id": direct, "client_id": UUID().uuidString, "body": "thanks"])
        #expect(try await bobs.next("ack").messageSeq == 2)
        let messages = [try await alices.next("message"), try await alices.next("message")]
        #expect(messages.map(\.messageSeq) == [1, 2])
        #expect((messages[1]["message"] as? [String: Any])?["body"] as? String == "thanks")
        let typing = alices.allFrames.filter { $0["type"] as? String == "typing" }.map { $0["active"] as? Bool }
        #expect(typing == [false], "the typing sent while blocked never arrived; the one after did")
        for socket in [alices, bobs] { await socket.close() }
    }

    @Test func mentionsSentOverWebSocketOnOneInstanceAreFoundOnTheOther() async throws {
        let (g1, g2) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Mentioner")
        let b = try await E2EUser.register(on: g2, name: "Mentioned")
        let outsider = try await E2EUser.register(on: g2, name: "Outsider")
        let chat = try await a.group(on: g1, members: [b])
        let onG1 = try await a.connect(g1)
        let onG2 = try await b.connect(g2)
        let word = "zm" + String(UUID().uuidString.prefix(8)).lowercased().filter(\.isLetter)
        // a mention of a non-member is refused with nothing stored; the socket stays open
        try await onG1.send(["type": "send", "ref": "bad", "chat_id": chat, "client_id": UUID().uuidString, "body": "x", "mentions": [outsider.id]])
        #expect(try await onG1.next("error") { $0["ref"] as? String == "bad" }["code"] as? String == "invalid_mentions")
        try await onG1.send(["type": "send", "ref": "m1", "chat_id": chat, "client_id": UUID().uuidString, "body": "ping \(word) @Mentioned", "mentions": [b.id]])
        let ack = try await onG1.next("ack")
        #expect((ack["message"] as? [String: Any])?["mentions"] as? [String] == [b.id])
        #expect(ack.messageSeq == 1, "the refused send took no seq")
        // the event on the other instance carries the mentions
        let event = try await onG2.next("message")
        #expect((event["message"] as? [String: Any])?["mentions"] as? [String] == [b.id])
        // and the other instance finds it: by mention and by a word's prefix, highlighted
        let mentions = try await HTTP.json("GET", "\(g2.baseURL)/v1/search/messages?mentions=me", token: b.token)
        #expect((mentions.json["results"] as? [[String: Any]])?.count == 1)
        let found = try await HTTP.json("GET", "\(g2.baseURL)/v1/search/messages?q=\(word.prefix(5))", token: b.token)
        let result = (found.json["results"] as? [[String: Any]])?.first
        #expect((result?["message"] as? [String: Any])?["seq"] as? Int == 1)
        #expect(result?["highlight"] as? String == "ping <mark>\(word)</mark> @Mentioned")
        #expect(((try await HTTP.json("GET", "\(g2.baseURL)/v1/search/messages?q=\(word)", token: outsider.token)).json["results"] as? [Any])?.isEmpty == true)
        for socket in [onG1, onG2] { await socket.close() }
    }

    @Test func aMembersSettingsReachTheirOwnSocketsOnEveryInstanceAndNobodyElse() async throws {
        let (g1, g2) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Muter")
        let b = try await E2EUser.register(on: g2, name: "Other")
        let chat = try await a.group(on: g1, members: [b])
        let aOnG2 = try await a.connect(g2)  // A's other device, on the other instance
        let bOnG2 = try await b.connect(g2)
        let changed = try await HTTP.json("PATCH", "\(g1.baseURL)/v1/chats/\(chat)/settings", ["notify": "mentions"], token: a.token)
        #expect(changed.status == 200)
        let event = try await aOnG2.next("chat")
        #expect(((event["chat"] as? [String: Any])?["settings"] as? [String: Any])?["notify"] as? String == "mentions")
        // a message published after the change on the same channel: anything for B about it came before
        #expect(try await a.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "after"]).status == 201)
        #expect(try await bOnG2.next("message").messageSeq == 1)
        #expect(!bOnG2.allFrames.contains { $0["type"] as? String == "chat" }, "the other member is not told")
        for socket in [aOnG2, bOnG2] { await socket.close() }
    }

    @Test func editsReactionsAndDeletesReachEveryInstanceAndEditsKeepTheirHistory() async throws {
        let (g1, g2) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Editor")
        let b = try await E2EUser.register(on: g2, name: "Reader")
        let chat = try await a.group(on: g1, members: [b])
        let onG1 = try await a.connect(g1)
        let onG2 = try await b.connect(g2)
        #expect(try await a.post(g1, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "first draft"]).status == 201)
        for socket in [onG1, onG2] { #expect(try await socket.next("message").messageSeq == 1) }

        // an edit on one instance reaches the other as message_updated, once
        let edited = try await HTTP.json("PATCH", "\(g1.baseURL)/v1/chats/\(chat)/messages/1", ["body": "final"], token: a.token)
        #expect(edited.status == 200)
        for socket in [onG1, onG2] {
            let update = try await socket.next("message_updated")
            #expect((update["message"] as? [String: Any])?["body"] as? String == "final")
            #expect(update.messageSeq == 1)
        }
        // its earlier version is kept, readable on the other instance by the sender only
        let history = try await HTTP.json("GET", "\(g2.baseURL)/v1/chats/\(chat)/messages/1/edits", token: a.token)
        #expect((history.json["edits"] as? [[String: Any]])?.map { $0["body"] as? String } == ["first draft"])
        #expect(try await HTTP.json("GET", "\(g2.baseURL)/v1/chats/\(chat)/messages/1/edits", token: b.token).status == 403)

        // reactions: announced on every instance when something changed, not for a repeat
        let thumbs = "%F0%9F%91%8D"  // 👍
        for method in ["PUT", "PUT", "DELETE"] {
            #expect(try await HTTP.json(method, "\(g2.baseURL)/v1/chats/\(chat)/messages/1/reactions/\(thumbs)", token: b.token).status == 204)
        }
        for socket in [onG1, onG2] {
            for added in [true, false] {
                let reaction = try await socket.next("reaction")
                #expect(reaction["emoji"] as? String == "👍" && reaction["user_id"] as? String == b.id && reaction["seq"] as? Int == 1)
                #expect(reaction["added"] as? Bool == added, "the repeated PUT is not announced")
            }
        }
        #expect(try await HTTP.json("PUT", "\(g1.baseURL)/v1/chats/\(chat)/messages/1/reactions/\(thumbs)", token: a.token).status == 204)
        for socket in [onG1, onG2] { #expect(try await socket.next("reaction")["user_id"] as? String == a.id) }
        let page = try await HTTP.json("GET", "\(g2.baseURL)/v1/chats/\(chat)/messages", token: b.token)
        let reactions = ((page.json["messages"] as? [[String: Any]])?.first?["reactions"] as? [[String: Any]]) ?? []
        #expect(reactions.count == 1 && reactions.first?["count"] as? Int == 1 && reactions.first?["me"] as? Bool == false)

        // a delete on the other instance: a tombstone everywhere, and the history goes with the body
        #expect(try await HTTP.json("DELETE", "\(g2.baseURL)/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
        for socket in [onG1, onG2] {
            let update = try await socket.next("message_updated")
            #expect((update["message"] as? [String: Any])?["deleted"] as? Bool == true)
            #expect((update["message"] as? [String: Any])?["body"] is NSNull)
            #expect(((update["message"] as? [String: Any])?["reactions"] as? [Any])?.isEmpty == true, "a tombstone has none, for everyone")
        }
        #expect((try await HTTP.json("GET", "\(g1.baseURL)/v1/chats/\(chat)/messages/1/edits", token: a.token).json["edits"] as? [Any])?.isEmpty == true)
        for socket in [onG1, onG2] {
            #expect(socket.allFrames.filter { $0["type"] as? String == "message_updated" }.count == 2, "each change once")
            await socket.close()
        }
    }

    @Test func messagesTypingAndReadsCrossInstancesExactlyOnce() async throws {
        let (g1, g2) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Ann")
        let b = try await E2EUser.register(on: g2, name: "Bob")
        let c = try await E2EUser.register(on: g1, name: "Cy")
        let group = try await a.group(on: g1, members: [b, c])
        let direct = try #require(try await a.post(g1, "/v1/chats", ["kind": "direct", "user_id": b.id]).json["id"] as? String)

        let a1 = try await a.connect(g1)
        let a2 = try await a.connect(g2)  // A's second device, on the other instance
        let b1 = try await b.connect(g2)
        let c1 = try await c.connect(g1)

        // over WebSocket: ack first for the sender, then the message on every connection
        try await a1.send(["type": "send", "ref": "r1", "chat_id": group, "client_id": UUID().uuidString, "body": "hello over ws"])
        let ack = try await a1.next("ack")
        #expect(ack["ref"] as? String == "r1")
        #expect(ack.messageSeq == 1)
        for socket in [a1, a2, b1, c1] {
            let event = try await socket.next("message")
            #expect(event.messageSeq == 1)
            #expect((event["message"] as? [String: Any])?["body"] as? String == "hello over ws")
        }
        // over REST: reaches the WebSockets too
        #expect(try await b.post(g2, "/v1/chats/\(group)/messages", ["client_id": UUID().uuidString, "body": "hello over rest"]).status == 201)
        #expect(try await b.post(g2, "/v1/chats/\(direct)/messages", ["client_id": UUID().uuidString, "body": "direct"]).status == 201)
        for socket in [a1, a2, b1, c1] {
            #expect(try await socket.next("message").messageSeq == 2)
        }
        for socket in [a1, a2, b1] {
            let event = try await socket.next("message")
            #expect(event.messageChat == direct)
        }

        // typing crosses instances and is never echoed to the typer
        try await b1.send(["type": "typing", "chat_id": group, "active": true])
        for socket in [a1, a2, c1] {
            let typing = try await socket.next("typing")
            #expect(typing["user_id"] as? String == b.id)
            #expect(typing["active"] as? Bool == true)
        }
        // read receipts too
        try await c1.send(["type": "read", "chat_id": group, "seq": 2])
        let read = try await b1.next("read")
        #expect(read["user_id"] as? String == c.id)
        #expect(read["seq"] as? Int == 2)
        try await a1.send(["type": "ping", "ref": "p"])
        #expect(try await a1.next("pong")["ref"] as? String == "p")

        // nothing twice: a last message closes the chat's stream on every socket (a chat's
        // events arrive in order, so a repeat of 1 or 2 would have come before it)
        #expect(try await c.post(g1, "/v1/chats/\(group)/messages", ["client_id": UUID().uuidString, "body": "last"]).status == 201)
        for socket in [a1, a2, b1, c1] {
            _ = try await socket.next("message") { $0.messageChat == group && $0.messageSeq == 3 }
        }
        for socket in [a1, a2, b1, c1] {
            let seqs = socket.allFrames.filter { $0["type"] as? String == "message" && $0.messageChat == group }.compactMap(\.messageSeq)
            #expect(seqs == [1, 2, 3])
            #expect(!socket.allFrames.contains { $0["type"] as? String == "typing" && $0["user_id"] as? String == b.id && socket === b1 })
        }
        for socket in [a1, a2, b1, c1] { await socket.close() }
    }

    /// During a rolling upgrade, gateways of the previous version publish
    /// their events as JSON, not envelopes: a gateway still routes them.
    @Test func eventsOfThePreviousVersionAreStillRouted() async throws {
        let (g1, _) = try await twoGateways()
        let a = try await E2EUser.register(on: g1, name: "Old")
        let b = try await E2EUser.register(on: g1, name: "New")
        let group = try await a.group(on: g1, members: [b])
        let b1 = try await b.connect(g1)
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let channel = "chat:{\(group)}"
        // what an old gateway published; in a cluster (which gateways of that version
        // did not support) as a gateway there would, on the shard channel
        @Sendable func publish(_ text: String) async throws {
            if redis.configuration.isCluster { try await redis.spublish(channel, .string(text)) } else { try await redis.publish(channel, .string(text)) }
        }
        // what an old gateway published after storing message 1, and its typing event
        let message = #"{"message":{"attachments":[],"body":"from an old gateway","chat_id":"\#(group)","client_id":"\#(UUID().uuidString.lowercased())","created_at":"2026-12-01T10:00:00.000Z","deleted":false,"edited_at":null,"id":"\#(UUID().uuidString.lowercased())","reply_to_seq":null,"sender_id":"\#(a.id)","seq":1},"type":"message"}"#
        try await publish(message)
        let event = try await b1.next("message")
        #expect(event.messageSeq == 1)
        #expect((event["message"] as? [String: Any])?["body"] as? String == "from an old gateway")
        try await publish(#"{"type":"typing","chat_id":"\#(group)","user_id":"\#(a.id)","active":true}"#)
        #expect(try await b1.next("typing")["user_id"] as? String == a.id)
        // an envelope of a newer version is counted and skipped; the socket stays up
        try await publish("P2 message \(group) \(a.id) 2 -\n{\"type\":\"message\"}")
        try await eventually {
            let metrics = String(decoding: try await HTTP.get("\(g1.operationsURL)/metrics").body, as: UTF8.self)
            return metrics.contains("parley_events_undecodable_total 1")
        }
        try await b1.send(["type": "ping", "ref": "after"])
        #expect(try await b1.next("pong")["ref"] as? String == "after")
        #expect(!b1.allFrames.contains { $0.messageSeq == 2 }, "nothing was made of it")
        await b1.close()
    }
}
