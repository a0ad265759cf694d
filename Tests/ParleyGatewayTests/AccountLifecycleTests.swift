import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

/// Sessions (devices), account deletion, and what an unverified address is worth.
@Suite struct AccountLifecycleTests {
    func live(_ body: @escaping @Sendable (APITestClient) async throws -> Void) async throws {
        try await GatewayTestSupport.liveApp().test(.live) { client in try await body(APITestClient(client)) }
    }

    func login(_ api: APITestClient, _ email: String, agent: String) async throws -> (access: String, refresh: String) {
        let response = try await api.client.execute(
            uri: "/v1/auth/login", method: .post,
            headers: [.contentType: "application/json", .userAgent: agent, .init("X-Forwarded-For")!: api.clientAddress],
            body: .init(bytes: try JSONSerialization.data(withJSONObject: ["email": email, "password": "correct horse battery"]))
        ) { APIResponse(status: Int($0.status.code), headers: $0.headers, body: Data($0.body.readableBytesView)) }
        try #require(response.status == 200, "\(response.text)")
        return (try #require(response.json["access_token"] as? String), try #require(response.json["refresh_token"] as? String))
    }

    func mailedCode(for email: String) async throws -> String {
        try await LimitsAPITests.mailedCode(for: email)
    }

    @Test func aUserSeesAndEndsTheirSessions() async throws {
        try await self.live { api in
            let email = APITestClient.uniqueEmail("devices")
            let (first, _, _) = try await api.register(email: email)
            let phone = try await self.login(api, email, agent: "Phone/1.0")
            let listed = try await api.call(.get, "/v1/me/sessions", token: first)
            let sessions = try #require(listed.json["sessions"] as? [[String: Any]])
            #expect(sessions.count == 2)
            #expect(sessions.filter { $0["current"] as? Bool == true }.count == 1)
            let phoneSession = try #require(sessions.first { $0["user_agent"] as? String == "Phone/1.0" })
            #expect(phoneSession["current"] as? Bool == false)
            #expect(phoneSession["created_at"] is String && phoneSession["last_used_at"] is String)
            let phoneID = try #require(phoneSession["id"] as? String)

            // ending the phone's session: its tokens stop working, this one goes on
            #expect(try await api.call(.delete, "/v1/me/sessions/\(phoneID)", token: first).status == 204)
            #expect(try await api.call(.get, "/v1/me", token: phone.access).status == 401)
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": phone.refresh]).status == 401)
            #expect(try await api.call(.get, "/v1/me", token: first).status == 200)
            #expect((try await api.call(.get, "/v1/me/sessions", token: first).json["sessions"] as? [Any])?.count == 1)
            // gone, unknown, or someone else's: 404 alike
            #expect(try await api.call(.delete, "/v1/me/sessions/\(phoneID)", token: first).code == "session_not_found")
            #expect(try await api.call(.delete, "/v1/me/sessions/\(UUID().uuidString)", token: first).code == "session_not_found")
            #expect(try await api.call(.delete, "/v1/me/sessions/not-a-uuid", token: first).code == "session_not_found")
            let (other, _, _) = try await api.register()
            let otherSession = try #require((try await api.call(.get, "/v1/me/sessions", token: other).json["sessions"] as? [[String: Any]])?.first?["id"] as? String)
            #expect(try await api.call(.delete, "/v1/me/sessions/\(otherSession)", token: first).code == "session_not_found")
            #expect(try await api.call(.get, "/v1/me", token: other).status == 200)
        }
    }

    @Test func aDeletedAccountLeavesTombstonesAndItsAddressFree() async throws {
        try await self.live { api in
            let email = APITestClient.uniqueEmail("leaving")
            let (leaver, _, leaverID) = try await api.register(email: email)
            let (friend, _, friendID) = try await api.register()
            let group = try #require(try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Mine", "member_ids": [friendID]], token: leaver).json["id"] as? String)
            let direct = try #require(try await api.call(.post, "/v1/chats", json: ["kind": "direct", "user_id": friendID], token: leaver).json["id"] as? String)
            for chat in [group, direct] {
                #expect(try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "body": "my words"], token: leaver).status == 201)
            }
            // an edited message: its earlier version goes with the account too
            #expect(try await api.call(.patch, "/v1/chats/\(group)/messages/1", json: ["body": "my words, edited"], token: leaver).status == 200)
            #expect((try await api.call(.get, "/v1/chats/\(group)/messages/1/edits", token: leaver).json["edits"] as? [Any])?.count == 1)

            // the password (or a fresh code) is required
            #expect(try await api.call(.delete, "/v1/me", json: [:] as [String: String], token: leaver).code == "invalid_request")
            #expect(try await api.call(.delete, "/v1/me", json: ["password": "not my password"], token: leaver).code == "invalid_credentials")
            #expect(try await api.call(.delete, "/v1/me", json: ["code": "123456"], token: leaver).code == "invalid_code")
            #expect(try await api.call(.delete, "/v1/me", json: ["password": "correct horse battery"], token: leaver).status == 204)

            // nothing of the account works any more
            #expect(try await api.call(.get, "/v1/me", token: leaver).status == 401)
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"]).status == 401)
            #expect(try await api.call(.get, "/v1/users/\(leaverID)", token: friend).status == 404)
            #expect((try await api.call(.get, "/v1/users?query=\(email)", token: friend).json["users"] as? [Any])?.isEmpty == true)
            // its messages stay as tombstones from a deleted user
            for chat in [group, direct] {
                let messages = try #require(try await api.call(.get, "/v1/chats/\(chat)/messages", token: friend).json["messages"] as? [[String: Any]])
                #expect(messages.count == 1)
                #expect(messages.first?["deleted"] as? Bool == true)
                #expect(messages.first?["body"] is NSNull)
                #expect(messages.first?["sender_id"] as? String == leaverID)
            }
            // the group's new owner finds no earlier version of the leaver's message
            #expect((try await api.call(.get, "/v1/chats/\(group)/messages/1/edits", token: friend).json["edits"] as? [Any])?.isEmpty == true)
            // it left the group, which passed to the other member; the direct chat shows a deleted user
            let members = try #require(try await api.call(.get, "/v1/chats/\(group)", token: friend).json["members"] as? [[String: Any]])
            #expect(members.count == 1)
            #expect(members.first?["role"] as? String == "owner")
            let peer = try #require(try await api.call(.get, "/v1/chats/\(direct)", token: friend).json["peer"] as? [String: Any])
            #expect(peer["display_name"] as? String == "Deleted user")
            // nobody can bring it into a chat again
            #expect(try await api.call(.post, "/v1/chats/\(group)/members", json: ["user_id": leaverID], token: friend).code == "user_not_found")
            // the address is free for a new account
            let (_, _, newID) = try await api.register(email: email)
            #expect(newID != leaverID)
        }
    }

    @Test func anAccountWithoutPasswordIsDeletedWithAFreshCode() async throws {
        var limits = AccountLimits()
        limits.codesPerEmail = [RateLimitRule(10, per: .seconds(60))]
        try await GatewayTestSupport.liveApp(limits: limits).test(.live) { client in
            let api = APITestClient(client)
            let email = APITestClient.uniqueEmail("codeonly")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let signedIn = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": try await self.mailedCode(for: email)])
            let access = try #require(signedIn.json["access_token"] as? String)
            #expect(try await api.call(.delete, "/v1/me", json: ["password": "anything at all"], token: access).code == "invalid_credentials")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            #expect(try await api.call(.delete, "/v1/me", json: ["code": try await self.mailedCode(for: email)], token: access).status == 204)
            #expect(try await api.call(.get, "/v1/me", token: access).status == 401)
        }
    }

    @Test func provingAnAddressTakesItFromWhoeverRegisteredItUnverified() async throws {
        try await self.live { api in
            let email = APITestClient.uniqueEmail("owner")
            let (squatter, squatterRefresh, squatterID) = try await api.register(email: email, password: "squatter password")
            let (friend, _, friendID) = try await api.register()
            let chat = try #require(try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Squat", "member_ids": [friendID]], token: squatter).json["id"] as? String)
            // an unverified address cannot be found by email
            #expect((try await api.call(.get, "/v1/users?query=\(email)", token: friend).json["users"] as? [Any])?.isEmpty == true)

            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let verified = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": try await self.mailedCode(for: email)])
            #expect(verified.status == 200)
            let owner = try #require(verified.json["access_token"] as? String)
            let ownerID = try #require((verified.json["user"] as? [String: Any])?["id"] as? String)

            // the owner has an account of their own, which inherits nothing
            #expect(ownerID != squatterID)
            #expect((try await api.call(.get, "/v1/chats", token: owner).json["chats"] as? [Any])?.isEmpty == true)
            #expect(try await api.call(.get, "/v1/chats/\(chat)", token: owner).status == 404)
            // the squatter lost every way in
            #expect(try await api.call(.get, "/v1/me", token: squatter).status == 401)
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": squatterRefresh]).status == 401)
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "squatter password"]).status == 401)
            // and the address now finds its owner
            let found = try #require(try await api.call(.get, "/v1/users?query=\(email)", token: friend).json["users"] as? [[String: Any]])
            #expect(found.map { $0["id"] as? String } == [ownerID])
        }
    }

    @Test func aSignedInUserProvesTheirOwnAddressAndKeepsTheirAccount() async throws {
        try await self.live { api in
            let email = APITestClient.uniqueEmail("mine")
            let (access, _, userID) = try await api.register(email: email)
            #expect(try await api.call(.post, "/v1/me/email/verify", json: ["code": "000000"], token: access).code == "invalid_code")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let verified = try await api.call(.post, "/v1/me/email/verify", json: ["code": try await self.mailedCode(for: email)], token: access)
            #expect(verified.status == 200)
            #expect(verified.json["id"] as? String == userID)
            #expect(verified.json["email_verified"] as? Bool == true)
            // the same account, password and session: nothing was taken over
            #expect(try await api.call(.get, "/v1/me", token: access).json["email_verified"] as? Bool == true)
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"]).status == 200)
        }
    }
}
