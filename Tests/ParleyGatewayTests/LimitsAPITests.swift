import Foundation
import HTTPTypes
import HiredisNIO
import HummingbirdTesting
import ParleyCore
import ParleyTestSupport
import Testing

@testable import ParleyGateway
import ParleyChat

/// Every write has a limit, shared through Redis, answered 429 with Retry-After;
/// guessing passwords and codes is bounded however it is spread out.
@Suite struct LimitsAPITests {
    func live(
        limits: AccountLimits = AccountLimits(), chatLimits: ChatLimits = ChatLimits(),
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        try await GatewayTestSupport.liveApp(limits: limits, chatLimits: chatLimits).test(.live) { client in try await body(client) }
    }

    static func expectLimited(_ response: APIResponse, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(response.status == 429, "\(what): \(response.text)", sourceLocation: sourceLocation)
        #expect(response.code == "rate_limited", sourceLocation: sourceLocation)
        #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1, "Retry-After", sourceLocation: sourceLocation)
    }

    @Test func guessablePasswordsAreRefused() async throws {
        try await self.live { client in
            let api = APITestClient(client)
            for password in ["password123", "qwertyuiop", "12345678"] {
                let response = try await api.call(.post, "/v1/auth/register", json: ["email": APITestClient.uniqueEmail(), "password": password, "display_name": "W"])
                #expect(response.status == 400)
                #expect(response.code == "weak_password", "\(password): \(response.text)")
            }
        }
    }

    @Test func registrationsAreLimitedPerAddressAndIPv6CountsBySlash64() async throws {
        var limits = AccountLimits()
        limits.registrationsPerAddress = [RateLimitRule(2, per: .seconds(3600))]
        try await self.live(limits: limits) { client in
            let network = "2001:db8:\(String(UInt16.random(in: 1...0xFFFE), radix: 16)):\(String(UInt16.random(in: 1...0xFFFE), radix: 16))"
            _ = try await APITestClient(client, clientAddress: "\(network)::1").register()
            _ = try await APITestClient(client, clientAddress: "\(network)::1").register()
            // another address of the same /64 is the same subscriber
            let same = try await APITestClient(client, clientAddress: "\(network):0:0:0:99").call(
                .post, "/v1/auth/register", json: ["email": APITestClient.uniqueEmail(), "password": "correct horse battery", "display_name": "R"]
            )
            Self.expectLimited(same, "third registration from one /64")
            _ = try await APITestClient(client).register()
        }
    }

    @Test func loginFailuresAreLimitedPerAccountAcrossAddresses() async throws {
        var limits = AccountLimits()
        limits.loginFailuresPerAccount = [RateLimitRule(3, per: .seconds(3600))]
        try await self.live(limits: limits) { client in
            let email = APITestClient.uniqueEmail("target")
            _ = try await APITestClient(client).register(email: email)
            for attempt in 0..<3 {
                // every guess from an address of its own
                let guess = try await APITestClient(client).call(.post, "/v1/auth/login", json: ["email": email, "password": "guess number \(attempt)"])
                #expect(guess.status == 401)
            }
            let blocked = try await APITestClient(client).call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"])
            Self.expectLimited(blocked, "login after 3 failures from 3 addresses")
        }
    }

    @Test func tokenCallsAndAccountChangesAreLimited() async throws {
        var limits = AccountLimits()
        limits.tokenCallsPerAddress = [RateLimitRule(2, per: .seconds(60))]
        limits.profileChangesPerUser = [RateLimitRule(2, per: .seconds(60))]
        try await self.live(limits: limits) { client in
            let address = TestEnvironment.randomClientAddress()
            let api = APITestClient(client, clientAddress: address)
            let me = try await api.register()
            // refreshes and logouts count together per address, valid token or not
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": "not-a-token"]).status == 401)
            #expect(try await api.call(.post, "/v1/auth/logout", json: ["refresh_token": "not-a-token"]).status == 401)
            Self.expectLimited(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": me.refresh]), "third token call from one address")
            // another address is not affected
            #expect(try await APITestClient(client).call(.post, "/v1/auth/refresh", json: ["refresh_token": me.refresh]).status == 200)
            // profile changes and ended sessions count together per user
            #expect(try await api.call(.patch, "/v1/me", json: ["display_name": "One"], token: me.access).status == 200)
            #expect(try await api.call(.delete, "/v1/me/sessions/\(UUID().uuidString.lowercased())", token: me.access).status == 404)
            Self.expectLimited(try await api.call(.patch, "/v1/me", json: ["display_name": "Three"], token: me.access), "third account change")
        }
    }

    @Test func wrongCodesAreLimitedPerEmailHoweverManyCodesAreRequested() async throws {
        var limits = AccountLimits()
        limits.wrongCodesPerEmail = [RateLimitRule(3, per: .seconds(3600))]
        limits.codesPerEmail = [RateLimitRule(10, per: .seconds(3600))]
        try await self.live(limits: limits) { client in
            let api = APITestClient(client)
            let email = APITestClient.uniqueEmail("codes")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            for _ in 0..<3 {
                #expect(try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": "000000"]).status == 401)
            }
            // a new code does not reset the count: even the right one is refused now
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let code = try await Self.mailedCode(for: email)
            Self.expectLimited(try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code]), "the right code after 3 wrong ones")
        }
    }

    static func mailedCode(for email: String) async throws -> String {
        let redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
        defer { Task { await redis.shutdown() } }
        let entries = try await redis.xrange(OneTimeCodes.mailStream, count: 500, reverse: true)
        let entry = try #require(entries.first { $0["to"] == email && $0["kind"] == "otp" }, "no OTP mail job for \(email)")
        return try Secrets.open(try #require(entry["code_box"]), key: OneTimeCodes.mailJobKey(secret: try GatewayTestSupport.configuration().jwtSecret))
    }

    @Test func chatWritesChangesAndUploadsAreLimited() async throws {
        var chatLimits = ChatLimits()
        chatLimits.writes = [RateLimitRule(3, per: .seconds(60))]
        chatLimits.chatChanges = [RateLimitRule(2, per: .seconds(60))]
        chatLimits.uploads = [RateLimitRule(2, per: .seconds(86_400))]
        chatLimits.uploadBytes = [RateLimitRule(100, per: .seconds(86_400))]
        try await self.live(chatLimits: chatLimits) { client in
            let api = APITestClient(client)
            let owner = try await api.register()
            let member = try await api.register()
            // chat changes: creating and membership changes share one budget
            let created = try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Limits", "member_ids": [member.userID]], token: owner.access)
            #expect(created.status == 201)
            let chat = try #require(created.json["id"] as? String)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)", json: ["title": "Renamed"], token: owner.access).status == 200)
            Self.expectLimited(try await api.call(.post, "/v1/chats", json: ["kind": "group", "title": "Third"], token: owner.access), "third chat change")
            // edits, deletes, reactions and read receipts share one budget
            let sent = try await api.call(.post, "/v1/chats/\(chat)/messages", json: ["client_id": UUID().uuidString, "body": "hi"], token: member.access)
            #expect(sent.status == 201)
            #expect(try await api.call(.patch, "/v1/chats/\(chat)/messages/1", json: ["body": "hello"], token: member.access).status == 200)
            #expect(try await api.call(.put, "/v1/chats/\(chat)/messages/1/reactions/%F0%9F%91%8D", token: member.access).status == 204)
            #expect(try await api.call(.post, "/v1/chats/\(chat)/read", json: ["seq": 1], token: member.access).status == 204)
            Self.expectLimited(try await api.call(.delete, "/v1/chats/\(chat)/messages/1", token: member.access), "fourth write")
            Self.expectLimited(try await api.call(.delete, "/v1/chats/\(chat)/messages/1/reactions/%F0%9F%91%8D", token: member.access), "fifth write")
            // uploads: by count and by bytes
            let text = Array("0123456789".utf8)
            #expect(try await api.upload(token: owner.access, type: "text/plain", text + text + text + text + text).status == 201)
            Self.expectLimited(try await api.upload(token: owner.access, type: "text/plain", Array(repeating: 65, count: 60)), "over 100 bytes a day")
            #expect(try await api.upload(token: owner.access, type: "text/plain", text).status == 201, "a refused upload does not count")
            Self.expectLimited(try await api.upload(token: owner.access, type: "text/plain", text), "third upload of the day")
        }
    }

    @Test func aFullPasswordQueueAnswers503WithRetryAfter() {
        let problem = APIError.from(PasswordHasher.Busy())
        #expect(problem?.status == .serviceUnavailable)
        #expect(problem?.code == "unavailable")
        #expect(problem?.retryAfter == 1)
    }
}
