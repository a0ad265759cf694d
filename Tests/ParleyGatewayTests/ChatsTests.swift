import Foundation
import HTTPTypes
import HiredisNIO
import Hummingbird
import HummingbirdTesting
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing
import ParleyChat

@Suite struct ChatsTests {
    struct User {
        let token: String
        let id: String
    }

    func live(_ body: @escaping @Sendable (APITestClient) async throws -> Void) async throws {
        try await GatewayTestSupport.liveApp().test(.live) { client in try await body(APITestClient(client)) }
    }

    func user(_ api: APITestClient, _ name: String = "User") async throws -> User {
        let (access, _, id) = try await APITestClient(api.client).register(displayName: name)
        return User(token: access, id: id)
    }

    func group(_ api: APITestClient, owner: User, members: [User], isPublic: Bool = false) async throws -> String {
        let response = try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Team", "member_ids": members.map(\.id), "public": isPublic], token: owner.token)
        try #require(response.status == 201, "\(response.text)")
        return try #require(response.json["id"] as? String)
    }

    @discardableResult
    func send(_ api: APITestClient, _ chat: String, _ user: User, _ body: String, clientID: String = UUID().uuidString.lowercased()) async throws -> APIResponse {
        try await APITestClient(api.client).call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": clientID, "body": body], token: user.token)
    }

    @Test func directChatsAreOnePerPair() async throws {
        try await self.live { api in
            let (a, b) = (try await self.user(api, "Ann"), try await self.user(api, "Ben"))
            let created = try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": b.id], token: a.token)
            #expect(created.status == 201)
            #expect(created.json["kind"] as? String == "direct")
            #expect((created.json["peer"] as? [String: Any])?["id"] as? String == b.id)
            #expect(created.json["members_count"] as? Int == 2)
            let again = try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": a.id], token: b.token)
            #expect(again.status == 200)
            #expect(again.json["id"] as? String == created.json["id"] as? String)
            #expect((again.json["peer"] as? [String: Any])?["id"] as? String == a.id)
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": a.id], token: a.token).code == "invalid_user")
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": UUID().uuidString], token: a.token).code == "user_not_found")
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "channel"], token: a.token).code == "invalid_kind")
        }
    }

    @Test func twentyConcurrentSendersGetGaplessSeqs() async throws {
        try await self.live { api in
            let owner = try await self.user(api, "Owner")
            var senders: [User] = []
            for i in 0..<19 { senders.append(try await self.user(api, "S\(i)")) }
            let chat = try await self.group(api, owner: owner, members: senders)
            senders.append(owner)
            let perSender = 8
            let seqs = try await withThrowingTaskGroup(of: [Int].self) { group in
                for sender in senders {
                    group.addTask {
                        var mine: [Int] = []
                        for i in 0..<perSender {
                            let response = try await self.send(api, chat, sender, "m\(i)")
                            #expect(response.status == 201, "\(response.text)")
                            mine.append(response.json["seq"] as? Int ?? -1)
                        }
                        #expect(mine == mine.sorted(), "one sender's messages keep their order")
                        return mine
                    }
                }
                return try await group.reduce(into: [Int]()) { $0 += $1 }
            }
            #expect(seqs.sorted() == Array(1...(20 * perSender)))
            let page = try await api.call(.get, "/v1/chats/\(chat)/messages?limit=100&after=0", token: owner.token)
            let history = try #require(page.json["messages"] as? [[String: Any]]).compactMap { $0["seq"] as? Int }
            #expect(history == Array(1...100))
        }
    }

    @Test func aResendWithTheSameClientIDReturnsTheOriginalEvenWhenRacing() async throws {
        try await self.live { api in
            let (a, b) = (try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            let clientID = UUID().uuidString.lowercased()
            let first = try await self.send(api, chat, a, "hello", clientID: clientID)
            #expect(first.status == 201)
            let again = try await self.send(api, chat, a, "hello (edited resend)", clientID: clientID)
            #expect(again.status == 200)
            #expect(again.json["id"] as? String == first.json["id"] as? String)
            #expect(again.json["body"] as? String == "hello")
            // another sender may use the same client id: it is per sender
            #expect(try await self.send(api, chat, b, "mine", clientID: clientID).status == 201)

            let racing = UUID().uuidString.lowercased()
            let results = try await withThrowingTaskGroup(of: (Int, String?, Int?).self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        let r = try await self.send(api, chat, a, "race", clientID: racing)
                        return (r.status, r.json["id"] as? String, r.json["seq"] as? Int)
                    }
                }
                return try await group.reduce(into: [(Int, String?, Int?)]()) { $0.append($1) }
            }
            #expect(results.filter { $0.0 == 201 }.count == 1)
            #expect(results.filter { $0.0 == 200 }.count == 9)
            #expect(Set(results.map(\.1)).count == 1)
            #expect(Set(results.map(\.2)) == [3])
            let chatBody = try await api.call(.get, "/v1/chats/\(chat)", token: a.token)
            #expect(chatBody.json["last_seq"] as? Int == 3)
        }
    }

    @Test func nonMembersSeeNothing() async throws {
        try await self.live { api in
            let (a, b, stranger) = (try await self.user(api), try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            let upload = try await api.client.execute(
                uri: "/v1/attachments", method: .post, headers: [.authorization: "Bearer \(a.token)", .contentType: "text/plain"], body: ByteBuffer(string: "secret notes")
            ) { response in try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any] }
            let attachment = try #require(upload?["id"] as? String)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "attachment_ids": [attachment]], token: a.token).status == 201)

            for (method, path, body) in [
                (HTTPRequest.Method.get, "/v1/chats/\(chat)", nil), (.get, "/v1/chats/\(chat)/messages", nil),
                (.post, "/v1/chats/\(chat)/messages", ["client_id": UUID().uuidString, "body": "hi"]), (.post, "/v1/chats/\(chat)/read", ["seq": 1]),
                (.patch, "/v1/chats/\(chat)/messages/1", ["body": "x"]), (.delete, "/v1/chats/\(chat)/messages/1", nil),
                (.get, "/v1/attachments/\(attachment)", nil), (.get, "/v1/chats/\(UUID().uuidString)", nil),
            ] as [(HTTPRequest.Method, String, [String: Any]?)] {
                let response = try await api.call(method, path, json: body, token: stranger.token)
                #expect(response.status == 404, "\(method) \(path): \(response.status)")
            }
            // members and the uploader can download it
            #expect(try await api.call(.get, "/v1/attachments/\(attachment)", token: b.token).text == "secret notes")
            let stranger2 = try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": stranger.id], token: stranger.token)
            #expect(stranger2.status == 404, "a private group cannot be joined")
        }
    }

    @Test func historyPagesEveryMessageExactlyOnceInBothDirections() async throws {
        try await self.live { api in
            let a = try await self.user(api)
            let chat = try await self.group(api, owner: a, members: [])
            for i in 1...23 { #expect(try await self.send(api, chat, a, "n\(i)").status == 201) }
            // backwards from the newest
            var seen: [Int] = []
            var before: Int?
            var pages = 0
            repeat {
                let path = "/v1/chats/\(chat)/messages?limit=5" + (before.map { "&before=\($0)" } ?? "")
                let page = try await api.call(.get, path, token: a.token)
                let seqs = (page.json["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
                #expect(seqs == seqs.sorted())
                seen = seqs + seen
                before = seqs.first
                pages += 1
                if page.json["has_more"] as? Bool != true { break }
            } while pages < 10
            #expect(seen == Array(1...23))
            // forwards from the start
            var forward: [Int] = []
            var after = 0
            while true {
                let page = try await api.call(.get, "/v1/chats/\(chat)/messages?limit=7&after=\(after)", token: a.token)
                let seqs = (page.json["messages"] as? [[String: Any]] ?? []).compactMap { $0["seq"] as? Int }
                forward += seqs
                after = seqs.last ?? after
                if page.json["has_more"] as? Bool != true { break }
            }
            #expect(forward == Array(1...23))
            let latest = try await api.call(.get, "/v1/chats/\(chat)/messages", token: a.token)
            #expect((latest.json["messages"] as? [Any])?.count == 23)
            #expect(latest.json["has_more"] as? Bool == false)
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages?limit=101", token: a.token).code == "invalid_limit")
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages?before=x", token: a.token).code == "invalid_before")
        }
    }

    @Test func unreadCountsFollowSendsAndReads() async throws {
        try await self.live { api in
            let (a, b) = (try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            for i in 1...5 { try await self.send(api, chat, a, "u\(i)") }
            func unread(_ user: User) async throws -> (Int?, Int?) {
                let list = try await api.call(.get, "/v1/chats", token: user.token)
                let entry = (list.json["chats"] as? [[String: Any]])?.first { $0["id"] as? String == chat }
                return (entry?["unread_count"] as? Int, entry?["last_read_seq"] as? Int)
            }
            #expect(try await unread(a) == (0, 5))  // sending reads up to your own message
            #expect(try await unread(b) == (5, 0))
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": 3], token: b.token).status == 204)
            #expect(try await unread(b) == (2, 3))
            // only forward, never past the last message
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": 1], token: b.token).status == 204)
            #expect(try await unread(b) == (2, 3))
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": 999], token: b.token).status == 204)
            #expect(try await unread(b) == (0, 5))
            try await self.send(api, chat, a, "u6")
            #expect(try await unread(b) == (1, 5))
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": -1], token: b.token).code == "invalid_seq")
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": "3"], token: b.token).code == "invalid_request")
        }
    }

    @Test func chatListIsByActivityWithAStableCursor() async throws {
        try await self.live { api in
            let me = try await self.user(api)
            var chats: [String] = []
            for _ in 0..<5 { chats.append(try await self.group(api, owner: me, members: [])) }
            try await self.send(api, chats[1], me, "bump")  // chats[1] is now the most recent
            let first = try await api.call(.get, "/v1/chats?limit=2", token: me.token)
            let firstIDs = (first.json["chats"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(firstIDs == [chats[1], chats[4]])
            let lastMessage = (first.json["chats"] as? [[String: Any]])?.first?["last_message"] as? [String: Any]
            #expect(lastMessage?["body"] as? String == "bump")
            let cursor = try #require(first.json["next_cursor"] as? String)
            // a new chat created meanwhile does not shift the next page
            _ = try await self.group(api, owner: me, members: [])
            var rest: [String] = []
            var next: String? = cursor
            while let c = next {
                let page = try await api.call(.get, "/v1/chats?limit=2&cursor=\(c)", token: me.token)
                rest += (page.json["chats"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                next = page.json["next_cursor"] as? String
            }
            #expect(rest == [chats[3], chats[2], chats[0]])
            #expect(try await api.call(.get, "/v1/chats?cursor=bogus", token: me.token).code == "invalid_cursor")
            // a cursor with a time PostgreSQL (or the driver) cannot take is refused, not a crash or a 500
            for micros in ["-9223372036854775808", "9223372036854775807", "-1", "253402300800000000"] {
                let crafted = Data("\(micros):\(UUID().uuidString.lowercased())".utf8).base64EncodedString()
                    .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
                #expect(try await api.call(.get, "/v1/chats?cursor=\(crafted)", token: me.token).code == "invalid_cursor", "\(micros)")
            }
        }
    }

    @Test func roleRules() async throws {
        try await self.live { api in
            let (owner, admin, member, other, outsider) = (try await self.user(api), try await self.user(api), try await self.user(api), try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: owner, members: [member, other])
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": admin.id, "role": "admin"], token: member.token).status == 403)
            let added = try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": admin.id, "role": "admin"], token: owner.token)
            #expect(added.status == 201)
            #expect(added.json["role"] as? String == "admin")
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": admin.id], token: owner.token).status == 200)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": outsider.id, "role": "admin"], token: admin.token).status == 403)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": outsider.id, "role": "owner"], token: owner.token).code == "invalid_role")
            // a member cannot remove others; an admin cannot remove the owner
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(other.id)", token: member.token).status == 403)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(owner.id)", token: admin.token).status == 403)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(other.id)", token: admin.token).status == 204)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": "Renamed"], token: member.token).status == 403)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": "Renamed"], token: admin.token).json["title"] as? String == "Renamed")
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": ""], token: admin.token).code == "invalid_title")
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": "a\u{2066}b"], token: admin.token).code == "invalid_title")
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": "e" + String(repeating: "\u{301}", count: 128)], token: admin.token).code == "invalid_title")
            // members may delete only their own messages; admins anyone's
            try await self.send(api, chat, member, "by member")
            try await self.send(api, chat, owner, "by owner")
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/2", token: member.token).status == 403)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "x"], token: admin.token).status == 403)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: admin.token).status == 204)
            // the owner leaving hands ownership to the oldest admin
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(owner.id)", token: owner.token).status == 204)
            let members = try await api.call(.get, "/v1/chats/\(chat)", token: admin.token).json["members"] as? [[String: Any]] ?? []
            let roles = Dictionary(uniqueKeysWithValues: members.compactMap { m -> (String, String)? in
                guard let id = (m["user"] as? [String: Any])?["id"] as? String, let role = m["role"] as? String else { return nil }
                return (id, role)
            })
            #expect(roles == [admin.id: "owner", member.id: "member"])
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages", token: owner.token).status == 404)
            // ... else to the oldest member
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(admin.id)", token: admin.token).status == 204)
            let after = try await api.call(.get, "/v1/chats/\(chat)", token: member.token).json["members"] as? [[String: Any]] ?? []
            #expect(after.first?["role"] as? String == "owner")
            #expect(after.count == 1)
        }
    }

    @Test func anyoneMayJoinAPublicGroup() async throws {
        try await self.live { api in
            let (owner, joiner) = (try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: owner, members: [], isPublic: true)
            #expect(try await api.call(.get, "/v1/chats/\(chat)", token: joiner.token).status == 200)
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages", token: joiner.token).status == 404)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": joiner.id, "role": "admin"], token: joiner.token).status == 403)
            let joined = try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": joiner.id], token: joiner.token)
            #expect(joined.status == 201)
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages", token: joiner.token).status == 200)
        }
    }

    @Test func messageRules() async throws {
        try await self.live { api in
            let (a, b) = (try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            try await self.send(api, chat, a, "first")
            let reply = try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "body": "re", "reply_to_seq": 1], token: b.token)
            #expect(reply.json["reply_to_seq"] as? Int == 1)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "body": "re", "reply_to_seq": 99], token: b.token).code == "invalid_reply")
            for (body, code) in [(["client_id": "nope", "body": "x"], "invalid_client_id"), (["client_id": UUID().uuidString, "body": ""], "invalid_body"),
                                 (["client_id": UUID().uuidString], "invalid_body"), (["client_id": UUID().uuidString, "body": String(repeating: "a", count: 4001)], "invalid_body"),
                                 (["client_id": UUID().uuidString, "body": String(repeating: "é", count: 4000) + "é"], "invalid_body"),
                                 (["client_id": UUID().uuidString, "body": String(repeating: "😀", count: 4097)], "invalid_body"),
                                 (["client_id": UUID().uuidString, "body": 5], "invalid_request"),
                                 (["client_id": UUID().uuidString, "body": "nul\u{0}byte"], "invalid_body"),
                                 (["client_id": UUID().uuidString, "body": "bell\u{7}"], "invalid_body"),
                                 (["client_id": UUID().uuidString, "attachment_ids": [UUID().uuidString]], "invalid_attachments")] as [([String: Any], String)] {
                let response = try await api.call(.post, "/v1/chats/\(chat)/messages", json: body, token: a.token)
                #expect(response.status == 400, "\(body)")
                #expect(response.code == code, "\(body): \(response.text)")
            }
            // edits by the sender; deletes leave a tombstone that keeps its seq
            let edited = try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "first, edited"], token: a.token)
            #expect(edited.json["body"] as? String == "first, edited")
            #expect(edited.json["edited_at"] is String)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "x"], token: b.token).status == 403)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "x"], token: a.token).code == "message_deleted")
            let history = try await api.call(.get, "/v1/chats/\(chat)/messages", token: b.token).json["messages"] as? [[String: Any]] ?? []
            #expect(history.count == 2)
            #expect(history.first?["deleted"] as? Bool == true)
            #expect(history.first?["body"] is NSNull)
            #expect((history.first?["attachments"] as? [Any])?.isEmpty == true)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/77", json: ["body": "x"], token: a.token).code == "message_not_found")
        }
    }

    @Test func editsKeepTheirHistoryForTheSenderAndTheChatsManagers() async throws {
        try await self.live { api in
            let (owner, admin, sender, member, outsider) = (try await self.user(api), try await self.user(api), try await self.user(api), try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: owner, members: [sender, member])
            #expect(try await api.call(.post, "/v1/chats/\(chat)/members", json: ["user_id": admin.id, "role": "admin"], token: owner.token).status == 201)
            try await self.send(api, chat, sender, "v1")
            func edits(_ user: User, _ seq: Int = 1) async throws -> APIResponse { try await api.call(.get, "/v1/chats/\(chat)/messages/\(seq)/edits", token: user.token) }
            #expect((try await edits(sender).json["edits"] as? [Any])?.isEmpty == true, "never edited: no earlier versions")
            for body in ["v2", "v2", "v3 <b>&</b>"] {
                #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": body], token: sender.token).status == 200)
            }
            // oldest first; an edit that changes nothing adds no version
            for reader in [sender, owner, admin] {
                let answer = try await edits(reader)
                #expect(answer.status == 200)
                let versions = answer.json["edits"] as? [[String: Any]] ?? []
                #expect(versions.map { $0["body"] as? String } == ["v1", "v2"])
                let times = versions.compactMap { $0["replaced_at"] as? String }
                #expect(times.count == 2 && times == times.sorted())
            }
            let current = try await api.call(.get, "/v1/chats/\(chat)/messages", token: member.token).json["messages"] as? [[String: Any]]
            #expect(current?.first?["body"] as? String == "v3 <b>&</b>")
            #expect(try await edits(member).status == 403, "other members see the current body only")
            #expect(try await edits(member).code == "forbidden")
            #expect(try await edits(outsider).code == "chat_not_found")
            #expect(try await edits(sender, 9).code == "message_not_found")
            #expect(try await api.call(.get, "/v1/chats/\(chat)/messages/0/edits", token: sender.token).code == "message_not_found")
            // deleting the message deletes its earlier versions with its body
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: admin.token).status == 204)
            #expect((try await edits(owner).json["edits"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func reactionsAreCountedPerEmojiWithMeAndLimited() async throws {
        var limits = ChatLimits()
        limits.writes = [RateLimitRule(1000, per: .seconds(1))]  // the 20-emoji limit, not the rate, is under test here
        try await GatewayTestSupport.liveApp(chatLimits: limits).test(.live) { client in
            let api = APITestClient(client)
            let (a, b, outsider) = (try await self.user(api), try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            let sent = try await self.send(api, chat, a, "react to me")
            #expect((sent.json["reactions"] as? [Any])?.isEmpty == true, "a new message has none")
            func react(_ user: User, _ emoji: String, _ method: HTTPRequest.Method = .put, seq: Int = 1) async throws -> APIResponse {
                let encoded = emoji.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? emoji
                return try await api.call(method, "/v1/chats/\(chat)/messages/\(seq)/reactions/\(encoded)", token: user.token)
            }
            func reactions(_ user: User) async throws -> [String] {
                let messages = try await api.call(.get, "/v1/chats/\(chat)/messages", token: user.token).json["messages"] as? [[String: Any]]
                return (messages?.first?["reactions"] as? [[String: Any]] ?? []).map { "\($0["emoji"] ?? "")\($0["count"] ?? "")\(($0["me"] as? Bool) == true ? "+" : "")" }
            }
            for (user, emoji) in [(b, "👍"), (a, "🎉"), (a, "👍"), (a, "👍")] {
                #expect(try await react(user, emoji).status == 204)
            }
            // most used first; `me` as each reader sees it
            #expect(try await reactions(a) == ["👍2+", "🎉1+"])
            #expect(try await reactions(b) == ["👍2+", "🎉1"])
            // taking one back, twice
            #expect(try await react(a, "🎉", .delete).status == 204)
            #expect(try await react(a, "🎉", .delete).status == 204)
            #expect(try await reactions(b) == ["👍2+"])
            // the editor's answer has them as the editor sees them
            let edited = try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "edited"], token: a.token)
            #expect((edited.json["reactions"] as? [[String: Any]])?.first?["me"] as? Bool == true)

            // refusals
            #expect(try await react(a, "a").code == "invalid_emoji")
            #expect(try await react(a, "👍👍").code == "invalid_emoji")
            #expect(try await api.call(.put, "/v1/chats/\(chat)/messages/1/reactions/%FF", token: a.token).code == "invalid_emoji")
            #expect(try await react(outsider, "👍").code == "chat_not_found")
            #expect(try await react(a, "👍", seq: 9).code == "message_not_found")
            // at most 20 different emoji; one already there can still be added
            let more = ["😀", "😂", "😍", "🤔", "😮", "😢", "😡", "🙏", "👏", "🔥", "💯", "✅", "❌", "👀", "🚀", "🌟", "🍕", "🎂", "🤝"]
            for emoji in more { #expect(try await react(a, emoji).status == 204, "\(emoji)") }
            #expect(try await react(b, "🐙").code == "too_many_reactions")
            #expect(try await react(b, "🚀").status == 204)
            #expect(try await reactions(b).count == 20)
            // a deleted message loses them, and gets no more
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
            #expect(try await reactions(b).isEmpty)
            #expect(try await react(b, "👍").code == "message_deleted")
            #expect(try await react(b, "👍", .delete).status == 204)
        }
    }

    @Test func aBlockedUserCannotReachTheBlockerAndIsNotToldWhy() async throws {
        try await self.live { api in
            let (alice, bob, carol) = (try await self.user(api, "Alice"), try await self.user(api, "Bob"), try await self.user(api, "Carol"))
            let direct = try #require(try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": bob.id], token: alice.token).json["id"] as? String)
            let before = UUID().uuidString.lowercased()
            #expect(try await self.send(api, direct, bob, "before the block", clientID: before).status == 201)
            let shared = try await self.group(api, owner: carol, members: [alice, bob])
            let bobsGroup = try await self.group(api, owner: bob, members: [])

            // Alice blocks Bob (twice: a no-op); refusals of the endpoint itself
            for _ in 0..<2 { #expect(try await api.call(.put, "/v1/me/blocks/\(bob.id)", token: alice.token).status == 204) }
            #expect(try await api.call(.put, "/v1/me/blocks/\(alice.id)", token: alice.token).code == "invalid_user")
            #expect(try await api.call(.put, "/v1/me/blocks/\(UUID().uuidString)", token: alice.token).code == "user_not_found")
            #expect(try await api.call(.put, "/v1/me/blocks/not-a-uuid", token: alice.token).code == "user_not_found")
            let listed = try await api.call(.get, "/v1/me/blocks", token: alice.token).json["users"] as? [[String: Any]]
            #expect(listed?.map { $0["id"] as? String } == [bob.id])
            #expect((try await api.call(.get, "/v1/me/blocks", token: bob.token).json["users"] as? [Any])?.isEmpty == true)

            // Bob can neither write to Alice, nor open a direct chat with her, nor bring her into a group
            let refused = try await self.send(api, direct, bob, "after the block")
            #expect(refused.status == 403 && refused.code == "blocked")
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": alice.id], token: bob.token).code == "blocked")
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Trap", "member_ids": [alice.id, carol.id]], token: bob.token).code == "blocked")
            #expect(try await api.call(.post, "/v1/chats/\(bobsGroup)/members", json: ["user_id": alice.id], token: bob.token).code == "blocked")
            // a resend of what was stored before the block still answers with it
            #expect(try await self.send(api, direct, bob, "before the block", clientID: before).status == 200)
            // nor can he rewrite his earlier message there or react; deleting his own is still his
            #expect(try await api.call(.patch, "/v1/chats/\(direct)/messages/1", json: ["body": "rewritten"], token: bob.token).code == "blocked")
            #expect(try await api.call(.put, "/v1/chats/\(direct)/messages/1/reactions/%F0%9F%91%8D", token: bob.token).code == "blocked")
            // Alice still can; in a shared group nothing changes; others may still add Alice
            #expect(try await self.send(api, direct, alice, "I can still write").status == 201)
            #expect(try await self.send(api, shared, bob, "hello group").status == 201)
            #expect(try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Fine", "member_ids": [alice.id, bob.id]], token: carol.token).status == 201)
            // nothing else tells Bob
            #expect(try await api.call(.get, "/v1/users/\(alice.id)", token: bob.token).status == 200)
            #expect(try await api.call(.get, "/v1/chats/\(direct)", token: bob.token).status == 200)

            #expect(try await api.call(.put, "/v1/chats/\(direct)/messages/2/reactions/%F0%9F%91%8D", token: alice.token).status == 204)
            #expect(try await api.call(.delete, "/v1/chats/\(direct)/messages/1", token: bob.token).status == 204)

            // unblocked: as before
            for _ in 0..<2 { #expect(try await api.call(.delete, "/v1/me/blocks/\(bob.id)", token: alice.token).status == 204) }
            #expect(try await self.send(api, direct, bob, "after the unblock").status == 201)
            #expect(try await api.call(.post, "/v1/chats/\(bobsGroup)/members", json: ["user_id": alice.id], token: bob.token).status == 201)
            #expect((try await api.call(.get, "/v1/me/blocks", token: alice.token).json["users"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func bodiesRoundTripByteForByteAndSQLIsLiteral() async throws {
        try await self.live { api in
            let a = try await self.user(api)
            let chat = try await self.group(api, owner: a, members: [])
            let bodies = [
                "emoji 👩‍👩‍👧‍👦🏳️‍🌈 and flags 🇯🇵",
                "RTL: שלום עולם — مرحبا بالعالم",
                "combining: e\u{301} a\u{30A} Z\u{335}\u{30F}",
                "'; DROP TABLE messages; -- \\ %_ $1 \u{2028} \"quoted\"",
                String(repeating: "x🙂", count: 2000),
                "line\nbreaks\tand\r\ncontrol-free",
            ]
            for body in bodies {
                let sent = try await self.send(api, chat, a, body)
                #expect(sent.status == 201, "\(sent.text)")
                #expect((sent.json["body"] as? String).map { Array($0.utf8) } == Array(body.utf8))
            }
            let history = try await api.call(.get, "/v1/chats/\(chat)/messages", token: a.token).json["messages"] as? [[String: Any]] ?? []
            #expect(history.compactMap { ($0["body"] as? String).map { Array($0.utf8) } } == bodies.map { Array($0.utf8) })
            #expect(try await api.call(.get, "/v1/chats", token: a.token).status == 200)
        }
    }

    @Test func attachmentsAreCheckedAndAuthorized() async throws {
        try await self.live { api in
            let (a, b, c) = (try await self.user(api), try await self.user(api), try await self.user(api))
            func upload(_ token: String, _ type: String, _ bytes: [UInt8]) async throws -> APIResponse {
                try await api.upload(token: token, type: type, bytes)
            }
            let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 100)
            let uploaded = try await upload(a.token, "image/png", png)
            #expect(uploaded.status == 201)
            #expect(uploaded.json["size"] as? Int == png.count)
            #expect((uploaded.json["sha256"] as? String)?.count == 64)
            let id = try #require(uploaded.json["id"] as? String)
            #expect(try await upload(a.token, "image/jpeg", png).code == "content_mismatch")
            #expect(try await upload(a.token, "image/svg+xml", Array("<svg/>".utf8)).status == 415)
            #expect(try await upload(a.token, "text/plain", [0x41, 0x00, 0x42]).status == 415)
            #expect(try await upload(a.token, "image/png", []).code == "empty_attachment")
            let tooBig = try await upload(a.token, "image/png", png + Array(repeating: 0, count: 10 * 1024 * 1024))
            #expect(tooBig.status == 413)
            #expect(tooBig.code == "too_large")

            // only the uploader's own files, at most 10
            let chat = try await self.group(api, owner: a, members: [b])
            #expect(try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "attachment_ids": [id]], token: b.token).code == "invalid_attachments")
            #expect(try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "attachment_ids": Array(repeating: id, count: 11)], token: a.token).code == "invalid_attachments")
            #expect(try await api.call(.get, "/v1/attachments/\(id)", token: b.token).status == 404)
            let sent = try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "attachment_ids": [id]], token: a.token)
            #expect(sent.status == 201)
            #expect((sent.json["attachments"] as? [[String: Any]])?.first?["content_type"] as? String == "image/png")
            let download = try await api.call(.get, "/v1/attachments/\(id)", token: b.token)
            #expect(download.status == 200)
            #expect(Array(download.body) == png)
            #expect(download.headers[.contentType] == "image/png")
            #expect(download.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            #expect(try await api.call(.get, "/v1/attachments/\(id)", token: c.token).status == 404)
            // deleting the message takes the file away from the members (not from its uploader)
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
            #expect(try await api.call(.get, "/v1/attachments/\(id)", token: b.token).status == 404)
            #expect(try await api.call(.get, "/v1/attachments/\(id)", token: a.token).status == 200)
        }
    }

    @Test func changesArePublishedOnTheChatChannel() async throws {
        let subscriber = RedisSubscriber(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        let runner = Task { try await subscriber.run() }
        defer { runner.cancel() }
        try await self.live { api in
            let (a, b) = (try await self.user(api), try await self.user(api))
            let chat = try await self.group(api, owner: a, members: [b])
            while !subscriber.isConnected { try await Task.sleep(for: .milliseconds(20)) }
            try await subscriber.subscribe([ChatEventPublisher.channel(UUID(uuidString: chat)!)])
            let sent = try await self.send(api, chat, a, "published")
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": 1], token: b.token).status == 204)
            // what any gateway receives: envelopes (a deadline, so that a format nobody reads fails instead of hanging)
            let received = try await withDeadline(.seconds(10)) {
                var received: [EventEnvelope] = []
                var events = subscriber.events.makeAsyncIterator()
                while received.count < 2, let event = await events.next() {
                    if case .message(_, let payload) = event { received.append(try EventEnvelope.decode(payload)) }
                }
                return received
            }
            #expect(received.first?.kind == .message && received.first?.seq == 1)
            let frame = try received.first.flatMap { try JSONSerialization.jsonObject(with: Data($0.frame.readableBytesView)) as? [String: Any] }
            #expect(frame?["type"] as? String == "message")
            #expect((frame?["message"] as? [String: Any])?["id"] as? String == sent.json["id"] as? String)
            #expect(received.last?.kind == .read && received.last?.seq == 1)
            #expect(received.last?.userID == UUID(uuidString: b.id))
        }
    }
}
