import Foundation
import ParleyTestSupport
import Testing

/// A changed chat (`chat` frames from `chat_updated` events): each gateway
/// reads it from PostgreSQL once for all of its sockets in that chat, and
/// every socket still gets its own member's view of it.
@Suite(.serialized) struct ChatUpdateTests {
    static func reads(on gateway: GatewayProcess) async throws -> Double {
        try await GapFillTests.counter("parley_chat_updates_read_total", on: gateway)
    }

    @Test func aRenamedGroupIsReadOnceForEveryLocalSocketEachWithItsOwnView() async throws {
        let (a, b) = try await twoGateways()
        let owner = try await E2EUser.register(on: a, name: "Owner")
        let bob = try await E2EUser.register(on: b, name: "Bob"), cat = try await E2EUser.register(on: b, name: "Cat")
        let chat = try await owner.group(on: a, members: [bob, cat])
        for body in ["one", "two"] {
            #expect(try await owner.post(a, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": body]).status == 201)
        }
        // Bob has read the first message; Cat wants mentions only
        #expect(try await bob.post(b, "/v1/chats/\(chat)/read", ["seq": 1]).status < 300)
        #expect(try await HTTP.json("PATCH", "\(b.baseURL)/v1/chats/\(chat)/settings", ["notify": "mentions"], token: cat.token).status == 200)
        // Bob on two devices, Cat on one, all on gateway B
        let sockets = [(bob, try await bob.connect(b)), (bob, try await bob.connect(b)), (cat, try await cat.connect(b))]
        let before = try await Self.reads(on: b)

        let renamed = try await HTTP.json("PATCH", "\(a.baseURL)/v1/chats/\(chat)", ["title": "Renamed"], token: owner.token)
        #expect(renamed.status == 200, "\(renamed)")
        for (user, socket) in sockets {
            let event = try await socket.next("chat") { ($0["chat"] as? [String: Any])?["title"] as? String == "Renamed" }
            let view = try #require(event["chat"] as? [String: Any])
            #expect(view["id"] as? String == chat && view["last_seq"] as? Int == 2)
            if user.id == bob.id {
                #expect(view["last_read_seq"] as? Int == 1 && view["unread_count"] as? Int == 1, "Bob's own read position")
                #expect((view["settings"] as? [String: Any])?["notify"] as? String == "all")
            } else {
                #expect(view["last_read_seq"] as? Int == 0 && view["unread_count"] as? Int == 2)
                #expect((view["settings"] as? [String: Any])?["notify"] as? String == "mentions", "Cat's own settings")
            }
        }
        #expect(try await Self.reads(on: b) == before + 1, "one read on gateway B for three sockets of two members")

        // a member's own change: only their sockets are told, still with one read
        #expect(try await HTTP.json("PATCH", "\(a.baseURL)/v1/chats/\(chat)/settings", ["notify": "none"], token: bob.token).status == 200)
        for (_, socket) in sockets.prefix(2) {
            _ = try await socket.next("chat") { (($0["chat"] as? [String: Any])?["settings"] as? [String: Any])?["notify"] as? String == "none" }
        }
        #expect(try await Self.reads(on: b) == before + 2)
        #expect(sockets[2].1.allFrames.filter { $0["type"] as? String == "chat" }.count == 1, "Cat was told of the rename only")
        for (_, socket) in sockets { await socket.close() }
    }

    @Test func aBurstOfChangesEndsWithEverySocketShowingTheLastState() async throws {
        let (a, b) = try await twoGateways()
        let owner = try await E2EUser.register(on: a, name: "Owner")
        var members: [E2EUser] = []
        for name in ["Bob", "Cat", "Dan"] { members.append(try await E2EUser.register(on: b, name: name)) }
        let chat = try await owner.group(on: a, members: members)
        var sockets: [TestWebSocket] = []
        for member in members { sockets.append(try await member.connect(b)) }
        let before = try await Self.reads(on: b)

        // 12 renames at once: each socket's last chat frame shows the title that stayed
        let renames = 12
        try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 1...renames {
                group.addTask { try await HTTP.json("PATCH", "\(a.baseURL)/v1/chats/\(chat)", ["title": "Title \(index)"], token: owner.token).status }
            }
            for try await status in group { #expect(status == 200) }
        }
        let final = try #require(try await HTTP.json("GET", "\(a.baseURL)/v1/chats/\(chat)", token: owner.token).json["title"] as? String)
        for socket in sockets {
            _ = try await socket.next("chat") { ($0["chat"] as? [String: Any])?["title"] as? String == final }
        }
        // every event was told (one frame each), from at most one read per event
        let all = sockets
        try await eventually {
            all.allSatisfy { socket in socket.allFrames.filter { $0["type"] as? String == "chat" }.count == renames }
        }
        for socket in sockets {
            let titles = socket.allFrames.filter { $0["type"] as? String == "chat" }.compactMap { ($0["chat"] as? [String: Any])?["title"] as? String }
            #expect(titles.last == final, "the last frame shows the last state: \(titles)")
        }
        let reads = try await Self.reads(on: b) - before
        #expect(reads >= 1 && reads <= Double(renames), "\(reads) reads for \(renames) changes")
        for socket in sockets { await socket.close() }
    }
}
