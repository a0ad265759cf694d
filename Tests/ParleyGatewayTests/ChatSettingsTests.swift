import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ParleyChat
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

/// Per-chat notification settings (PROTOCOL.md 1.1) over REST, against the real PostgreSQL.
@Suite struct ChatSettingsTests {
    let chats = ChatsTests()

    @Test func eachMemberHasTheirOwnSettingsAndFieldsLeftOutAreKept() async throws {
        try await self.chats.live { api in
            let (a, b, outsider) = (try await self.chats.user(api), try await self.chats.user(api), try await self.chats.user(api))
            let chat = try await self.chats.group(api, owner: a, members: [b])
            func settings(_ user: ChatsTests.User) async throws -> [String: Any]? {
                try await api.call(.get, "/v1/chats/\(chat)", token: user.token).json["settings"] as? [String: Any]
            }
            #expect(try await settings(a)?["notify"] as? String == "all")
            #expect(try await settings(a)?["muted_until"] is NSNull)

            let changed = try await api.call(.patch, "/v1/chats/\(chat)/settings", json: ["notify": "mentions", "muted_until": "2031-01-02T03:04:05Z"], token: a.token)
            #expect(changed.status == 200)
            #expect(changed.json["notify"] as? String == "mentions")
            #expect(changed.json["muted_until"] as? String == "2031-01-02T03:04:05.000Z")
            #expect(try await settings(a)?["notify"] as? String == "mentions")
            #expect(try await settings(b)?["notify"] as? String == "all", "the other member's are their own")
            let list = try await api.call(.get, "/v1/chats", token: a.token).json["chats"] as? [[String: Any]]
            #expect((list?.first?["settings"] as? [String: Any])?["muted_until"] as? String == "2031-01-02T03:04:05.000Z")

            // left out: kept; null: unmuted; an offset is converted to UTC
            let unmuted = try await api.call(.patch, "/v1/chats/\(chat)/settings", json: ["muted_until": NSNull()], token: a.token)
            #expect(unmuted.json["notify"] as? String == "mentions" && unmuted.json["muted_until"] is NSNull)
            let offset = try await api.call(.patch, "/v1/chats/\(chat)/settings", json: ["muted_until": "2031-01-02T05:04:05.5+02:00"], token: a.token)
            #expect(offset.json["muted_until"] as? String == "2031-01-02T03:04:05.500Z")
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/settings", json: [String: Any](), token: a.token).json["notify"] as? String == "mentions")
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/settings", json: ["notify": "none"], token: a.token).json["notify"] as? String == "none")

            // refusals
            for (body, code) in [
                (["notify": "loud"], "invalid_notify"), (["muted_until": "tomorrow"], "invalid_muted_until"),
                (["muted_until": "10000-01-01T00:00:00Z"], "invalid_muted_until"), (["muted_until": 5], "invalid_request"), (["notify": NSNull()], "invalid_request"),
            ] as [([String: Any], String)] {
                let response = try await api.call(.patch, "/v1/chats/\(chat)/settings", json: body, token: a.token)
                #expect(response.status == 400, "\(body): \(response.text)")
                #expect(response.code == code, "\(body): \(response.text)")
            }
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/settings", json: ["notify": "all"], token: outsider.token).code == "chat_not_found")
            #expect(try await api.call(.patch, "/v1/chats/\(UUID())/settings", json: ["notify": "all"], token: a.token).code == "chat_not_found")
        }
    }
}
