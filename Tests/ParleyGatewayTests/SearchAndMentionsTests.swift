import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ParleyChat
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import PostgresNIO
import Testing

/// Mentions and message search (PROTOCOL.md 1.1) over REST, against the real PostgreSQL.
@Suite struct SearchAndMentionsTests {
    typealias User = ChatsTests.User
    let chats = ChatsTests()

    func live(_ body: @escaping @Sendable (APITestClient) async throws -> Void) async throws {
        var limits = ChatLimits()
        limits.sends = [RateLimitRule(1000, per: .seconds(1))]
        limits.searches = [RateLimitRule(1000, per: .seconds(1))]
        try await GatewayTestSupport.liveApp(chatLimits: limits).test(.live) { client in try await body(APITestClient(client)) }
    }

    func send(_ api: APITestClient, _ chat: String, _ user: User, _ body: String, mentions: [Any]? = nil, clientID: String = UUID().uuidString) async throws -> APIResponse {
        var json: [String: Any] = ["client_id": clientID, "body": body]
        if let mentions { json["mentions"] = mentions }
        return try await api.call(.post, "/v1/chats/\(chat)/messages", json: json, token: user.token)
    }

    func search(_ api: APITestClient, _ user: User, _ parameters: String) async throws -> APIResponse {
        try await api.call(.get, "/v1/search/messages?\(parameters)", token: user.token)
    }

    /// The bodies of a search's results, in order.
    func bodies(_ response: APIResponse) -> [String] {
        (response.json["results"] as? [[String: Any]] ?? []).map { (($0["message"] as? [String: Any])?["body"] as? String) ?? "?" }
    }

    static func query(_ text: String) -> String {
        "q=" + (text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text)
    }

    @Test func mentionsAreMembersStoredOnceAndReturnedEverywhere() async throws {
        try await self.live { api in
            let (a, b, c, outsider) = (try await self.chats.user(api), try await self.chats.user(api), try await self.chats.user(api), try await self.chats.user(api))
            let chat = try await self.chats.group(api, owner: a, members: [b, c])

            let clientID = UUID().uuidString
            let sent = try await self.send(api, chat, a, "hi @b and @c", mentions: [b.id, c.id.uppercased(), b.id], clientID: clientID)
            #expect(sent.status == 201)
            #expect(sent.json["mentions"] as? [String] == [b.id, c.id], "each once, in the order given, lower-cased")
            let plain = try await self.send(api, chat, a, "no one")
            #expect(plain.json["mentions"] as? [String] == [])
            // a resend answers with the stored mentions, whatever it now says
            let resent = try await self.send(api, chat, a, "hi @b and @c", mentions: [], clientID: clientID)
            #expect(resent.status == 200)
            #expect(resent.json["mentions"] as? [String] == [b.id, c.id])
            // history and the chat list carry them
            let history = try await api.call(.get, "/v1/chats/\(chat)/messages", token: b.token).json["messages"] as? [[String: Any]]
            #expect(history?.map { $0["mentions"] as? [String] ?? ["?"] } == [[b.id, c.id], []])

            // refusals: a non-member, not an id, too many; nothing is stored
            #expect(try await self.send(api, chat, a, "x", mentions: [outsider.id]).code == "invalid_mentions")
            #expect(try await self.send(api, chat, a, "x", mentions: ["nobody"]).code == "invalid_mentions")
            #expect(try await self.send(api, chat, a, "x", mentions: Array(repeating: b.id, count: 51)).code == "invalid_mentions")
            #expect(try await self.send(api, chat, a, "x", mentions: [42]).status == 400)
            #expect(try await self.send(api, chat, a, "after the refusals").json["seq"] as? Int == 3, "refused sends take no seq")

            // a member who left can no longer be mentioned
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/members/\(c.id)", token: a.token).status == 204)
            #expect(try await self.send(api, chat, a, "x", mentions: [c.id]).code == "invalid_mentions")

            // a deleted message keeps none
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: a.token).status == 204)
            let after = try await api.call(.get, "/v1/chats/\(chat)/messages", token: b.token).json["messages"] as? [[String: Any]]
            #expect(after?.first?["mentions"] as? [String] == [])
        }
    }

    @Test func searchMatchesWordPrefixesCaseAndAccentInsensitively() async throws {
        try await self.live { api in
            let (a, b) = (try await self.chats.user(api), try await self.chats.user(api))
            let chat = try await self.chats.group(api, owner: a, members: [b])
            let word = "zq" + String(UUID().uuidString.prefix(6)).lowercased().filter(\.isLetter)  // unique to this test
            for body in ["Crème brûlée \(word)", "CREME \(word.uppercased()) <b>bold</b> & co", "creamy \(word)", "nothing here", "Ωmega \(word) crème"] {
                #expect(try await self.send(api, chat, a, body).status == 201)
            }
            // accents and case fold; words match as prefixes; every word must match
            #expect(Set(self.bodies(try await self.search(api, b, Self.query("creme \(word)")))) == ["Crème brûlée \(word)", "CREME \(word.uppercased()) <b>bold</b> & co", "Ωmega \(word) crème"])
            #expect(self.bodies(try await self.search(api, b, Self.query("cre \(word)"))).count == 4)
            #expect(self.bodies(try await self.search(api, b, Self.query("ωMEGA \(word)"))) == ["Ωmega \(word) crème"])
            #expect(self.bodies(try await self.search(api, b, Self.query("\(word) absent"))).isEmpty)

            // the highlight marks the matched words and escapes everything else
            let marked = try await self.search(api, b, Self.query("bold \(word)"))
            let highlight = (marked.json["results"] as? [[String: Any]])?.first?["highlight"] as? String
            #expect(highlight == "CREME <mark>\(word.uppercased())</mark> &lt;b&gt;<mark>bold</mark>&lt;/b&gt; &amp; co")

            // a deleted message never matches
            #expect(try await api.call(.delete, "/v1/chats/\(chat)/messages/3", token: a.token).status == 204)
            #expect(!self.bodies(try await self.search(api, b, Self.query("creamy \(word)"))).contains("creamy \(word)"))
            #expect(self.bodies(try await self.search(api, b, Self.query("creamy"))).isEmpty)
            // an edit is found by its new words only
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/4", json: ["body": "now \(word) edited"], token: a.token).status == 200)
            #expect(self.bodies(try await self.search(api, b, Self.query("edited \(word)"))) == ["now \(word) edited"])
        }
    }

    @Test func searchSeesOnlyTheCallersChatsRanksAndPagesWithoutRepeats() async throws {
        try await self.live { api in
            let (a, b, outsider) = (try await self.chats.user(api), try await self.chats.user(api), try await self.chats.user(api))
            let first = try await self.chats.group(api, owner: a, members: [b])
            let second = try await self.chats.group(api, owner: a, members: [])
            let hidden = try await self.chats.group(api, owner: outsider, members: [])
            let word = "zx" + String(UUID().uuidString.prefix(6)).lowercased().filter(\.isLetter)
            for index in 1...7 {
                #expect(try await self.send(api, first, a, "\(word) first \(index)").status == 201)
                #expect(try await self.send(api, second, a, "\(word) second \(index)").status == 201)
            }
            // the best match ranks first: the word three times in a short body
            #expect(try await self.send(api, first, a, "\(word) \(word) \(word)").status == 201)
            #expect(try await self.send(api, hidden, outsider, "\(word) hidden").status == 201)

            // all of a's chats, best first, then newest first
            let all = try await self.search(api, a, Self.query(word) + "&limit=50")
            let bodies = self.bodies(all)
            #expect(bodies.count == 15)
            #expect(bodies.first == "\(word) \(word) \(word)")
            #expect(Array(bodies.dropFirst().prefix(2)) == ["\(word) second 7", "\(word) first 7"])
            #expect(all.json["next_cursor"] is NSNull)
            // b is only in the first chat; the outsider's chat is never searched
            #expect(self.bodies(try await self.search(api, b, Self.query(word) + "&limit=50")).count == 8)
            #expect(self.bodies(try await self.search(api, outsider, Self.query(word))) == ["\(word) hidden"])
            // one chat
            #expect(self.bodies(try await self.search(api, a, Self.query(word) + "&chat_id=\(second)&limit=50")).count == 7)
            #expect(try await self.search(api, b, Self.query(word) + "&chat_id=\(second)").code == "chat_not_found")

            // pages of 4 give every result once, in the same order as one page
            var paged: [String] = []
            var cursor: String?
            repeat {
                let page = try await self.search(api, a, Self.query(word) + "&limit=4" + (cursor.map { "&cursor=\($0)" } ?? ""))
                #expect(page.status == 200)
                paged += self.bodies(page)
                cursor = page.json["next_cursor"] as? String
            } while cursor != nil && paged.count < 40
            #expect(paged == bodies)
        }
    }

    @Test func bothPlansFindTheSameResultsInTheSameOrder() async throws {
        try await self.live { api in
            let (a, b) = (try await self.chats.user(api), try await self.chats.user(api))
            let first = try await self.chats.group(api, owner: a, members: [b])
            let second = try await self.chats.group(api, owner: b, members: [])
            let word = "zp" + String(UUID().uuidString.prefix(6)).lowercased().filter(\.isLetter)
            for (index, body) in ["\(word) one", "\(word) \(word) twice", "\(word)s plural", "Élan \(word)", "other"].enumerated() {
                #expect(try await self.send(api, index % 2 == 0 ? first : second, b, body).status == 201)
            }
            try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                let store = ChatStore(database: Database(client: postgres, health: DatabaseHealth(logger: TestEnvironment.logger)), logger: TestEnvironment.logger)
                let viewer = try #require(UUID(uuidString: b.id))
                for search in [
                    MessageSearch(words: [word]), MessageSearch(words: ["elan", word]), MessageSearch(words: [word], chatID: UUID(uuidString: first)),
                    MessageSearch(words: ["\(word)s"]), MessageSearch(words: ["absent\(word)"]),
                ] {
                    var pages: [SearchPlan: [String]] = [:]
                    for plan in [SearchPlan.index, .scan] {
                        var bodies: [String] = [], cursor: SearchCursor?
                        repeat {
                            let (hits, more) = try await store.search(search, viewer: viewer, limit: 2, after: cursor, plan: plan)
                            bodies += hits.map { $0.message.body ?? "" }
                            cursor = more ? hits.last?.cursor : nil
                        } while cursor != nil
                        pages[plan] = bodies
                    }
                    #expect(pages[.index] == pages[.scan], "\(search.words)")
                    #expect(pages[.index]?.isEmpty == (search.words.first?.hasPrefix("absent") == true), "\(search.words)")
                }
                // a's view: the first chat only
                let (hits, _) = try await store.search(MessageSearch(words: [word]), viewer: try #require(UUID(uuidString: a.id)), limit: 10, after: nil, plan: .scan)
                #expect(Set(hits.map(\.message.chatID.lowercased)) == [first])
            }
        }
    }

    @Test func mentionsOfMeAcrossChatsNewestFirst() async throws {
        try await self.live { api in
            let (a, b, c) = (try await self.chats.user(api), try await self.chats.user(api), try await self.chats.user(api))
            let one = try await self.chats.group(api, owner: a, members: [b, c])
            let two = try await self.chats.group(api, owner: c, members: [b])
            #expect(try await self.send(api, one, a, "for b and c", mentions: [b.id, c.id]).status == 201)
            #expect(try await self.send(api, one, a, "for c only", mentions: [c.id]).status == 201)
            #expect(try await self.send(api, two, c, "later, for b", mentions: [b.id]).status == 201)
            #expect(try await self.send(api, two, c, "unmentioned").status == 201)
            #expect(self.bodies(try await self.search(api, b, "mentions=me")) == ["later, for b", "for b and c"])
            #expect(self.bodies(try await self.search(api, c, "mentions=me")) == ["for c only", "for b and c"])
            #expect(self.bodies(try await self.search(api, b, "mentions=me&chat_id=\(one)")) == ["for b and c"])
            // with words, both must hold
            #expect(self.bodies(try await self.search(api, b, "mentions=me&q=later")) == ["later, for b"])
            let result = (try await self.search(api, b, "mentions=me").json["results"] as? [[String: Any]])?.first
            #expect(result?["highlight"] as? String == "later, for b")
        }
    }

    @Test func badSearchParametersAreFourHundreds() async throws {
        try await self.live { api in
            let a = try await self.chats.user(api)
            for (parameters, code) in [
                ("", "invalid_query"), ("q=", "invalid_query"), ("q=" + String(repeating: "a", count: 201), "invalid_query"),
                ("mentions=you", "invalid_query"), ("q=x&chat_id=nope", "invalid_query"), ("q=x&limit=0", "invalid_limit"),
                ("q=x&limit=51", "invalid_limit"), ("q=x&cursor=bm9wZQ", "invalid_cursor"), ("q=x&cursor=%%%", "invalid_cursor"),
                ("q=%00", "invalid_query"),
            ] {
                let response = try await self.search(api, a, parameters)
                #expect(response.status == 400, "\(parameters): \(response.text)")
                #expect(response.code == code, "\(parameters)")
            }
            // quotes, backslashes and tsquery syntax are words like any other
            for text in ["'", "\\", "a & b | !c", "x:*", "())", "   ", "'; DROP TABLE messages; --"] {
                let response = try await self.search(api, a, Self.query(text))
                #expect(response.status == 200, "\(text): \(response.text)")
            }
            #expect(try await api.call(.get, "/v1/search/messages?q=x").status == 401)
        }
    }

    @Test func searchesAreRateLimited() async throws {
        var limits = ChatLimits()
        limits.searches = [RateLimitRule(2, per: .seconds(60))]
        try await GatewayTestSupport.liveApp(chatLimits: limits).test(.live) { client in
            let api = APITestClient(client)
            let a = try await self.chats.user(api)
            #expect(try await self.search(api, a, "q=one").status == 200)
            #expect(try await self.search(api, a, "q=two").status == 200)
            let limited = try await self.search(api, a, "q=three")
            #expect(limited.status == 429)
            #expect(limited.code == "rate_limited")
        }
    }
}
