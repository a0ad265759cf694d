import Foundation
import HTTPTypes
import HiredisNIO
import Hummingbird
import HummingbirdTesting
import ParleyCore
@testable import ParleyGateway
import ParleyTestSupport
import Testing

@Suite struct AuthTests {
    let redis: RedisClient

    init() throws {
        self.redis = RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger)
    }

    /// The code the mail job for `email` carries (sealed; opened with the mail-job key).
    func mailedCode(for email: String) async throws -> String {
        let entries = try await self.redis.xrange(OneTimeCodes.mailStream, count: 500, reverse: true)
        let entry = try #require(entries.first { $0["to"] == email && $0["kind"] == "otp" }, "no OTP mail job for \(email)")
        let secret = try GatewayTestSupport.configuration().jwtSecret
        let box = try #require(entry["code_box"])
        return try Secrets.open(box, key: OneTimeCodes.mailJobKey(secret: secret))
    }

    func live(limits: AccountLimits = AccountLimits(), _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await GatewayTestSupport.liveApp(limits: limits).test(.live) { client in try await body(client) }
    }

    @Test func signUpLoginRefreshLogout() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("flow")
            let registered = try await api.call(.post, "/v1/auth/register", json: ["email": "  \(email.uppercased()) ", "password": "correct horse battery", "display_name": " Ada "])
            #expect(registered.status == 201)
            #expect(registered.json["token_type"] as? String == "Bearer")
            #expect(registered.json["expires_in"] as? Int == 900)
            let user = try #require(registered.json["user"] as? [String: Any])
            #expect(user["email"] as? String == email)
            #expect(user["display_name"] as? String == "Ada")
            #expect(user["email_verified"] as? Bool == false)
            #expect(user["email_notifications"] as? Bool == true)
            #expect((user["created_at"] as? String)?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression) != nil)
            let firstAccess = try #require(registered.json["access_token"] as? String)

            let me = try await api.call(.get, "/v1/me", token: firstAccess)
            #expect(me.status == 200)
            #expect(me.json["email"] as? String == email)

            let login = try await api.call(.post, "/v1/auth/login", json: ["email": email.uppercased(), "password": "correct horse battery"])
            #expect(login.status == 200)
            let refreshToken = try #require(login.json["refresh_token"] as? String)
            let access = try #require(login.json["access_token"] as? String)

            let refreshed = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": refreshToken])
            #expect(refreshed.status == 200)
            let nextRefresh = try #require(refreshed.json["refresh_token"] as? String)
            #expect(nextRefresh != refreshToken)
            let nextAccess = try #require(refreshed.json["access_token"] as? String)
            #expect(try await api.call(.get, "/v1/me", token: nextAccess).status == 200)

            #expect(try await api.call(.post, "/v1/auth/logout", json: ["refresh_token": nextRefresh]).status == 204)
            let afterLogout = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": nextRefresh])
            #expect(afterLogout.status == 401)
            // the session's access tokens stop working at once; other sessions are untouched
            #expect(try await api.call(.get, "/v1/me", token: access).code == "invalid_token")
            #expect(try await api.call(.get, "/v1/me", token: nextAccess).status == 401)
            #expect(try await api.call(.get, "/v1/me", token: firstAccess).status == 200)
            #expect(try await api.call(.post, "/v1/auth/logout", json: ["refresh_token": "not-a-token"]).code == "invalid_token")
        }
    }

    @Test func registrationValidatesAndNormalizes() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("norm")
            _ = try await api.register(email: email)
            let again = try await api.call(.post, "/v1/auth/register", json: ["email": " \(email.uppercased())", "password": "another password", "display_name": "X"])
            #expect(again.status == 409)
            #expect(again.code == "email_taken")
            let cases: [([String: Any], String)] = [
                (["email": "not-an-email", "password": "long enough pw", "display_name": "A"], "invalid_email"),
                (["email": "a@b", "password": "long enough pw", "display_name": "A"], "invalid_email"),
                (["email": APITestClient.uniqueEmail(), "password": "short", "display_name": "A"], "invalid_password"),
                (["email": APITestClient.uniqueEmail(), "password": String(repeating: "p", count: 257), "display_name": "A"], "invalid_password"),
                (["email": APITestClient.uniqueEmail(), "password": "long enough pw", "display_name": "  "], "invalid_display_name"),
                (["email": APITestClient.uniqueEmail(), "password": "long enough pw", "display_name": "bad\u{7}name"], "invalid_display_name"),
                (["email": APITestClient.uniqueEmail(), "password": "long enough pw", "display_name": String(repeating: "n", count: 65)], "invalid_display_name"),
                // one character on screen, 71 for PostgreSQL (it was a 500)
                (["email": APITestClient.uniqueEmail(), "password": "long enough pw", "display_name": "e" + String(repeating: "\u{301}", count: 70)], "invalid_display_name"),
                (["email": APITestClient.uniqueEmail(), "password": "long enough pw", "display_name": "evil\u{202E}gnp.exe"], "invalid_display_name"),
                (["email": APITestClient.uniqueEmail(), "password": 12345678, "display_name": "A"], "invalid_request"),
                (["email": APITestClient.uniqueEmail(), "display_name": "A"], "invalid_request"),
            ]
            for (body, code) in cases {
                let response = try await api.call(.post, "/v1/auth/register", json: body)
                #expect(response.status == 400, "\(body)")
                #expect(response.code == code, "\(body): \(response.text)")
            }
            // 256 characters of emoji is a valid password, never truncated: a 255-character prefix does not log in
            let emoji: [Character] = ["🔑", "🚀", "🍀", "🎲", "🧭", "🌊", "🐙", "🎈"]
            let longPassword = String((0..<256).map { emoji[$0 % emoji.count] })
            let longEmail = APITestClient.uniqueEmail("long")
            _ = try await api.register(email: longEmail, password: longPassword)
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": longEmail, "password": longPassword]).status == 200)
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": longEmail, "password": String(longPassword.dropLast())]).status == 401)
        }
    }

    @Test func parallelRegistrationsOfOneEmailCreateOneAccount() async throws {
        try await self.live { raw in
            let email = APITestClient.uniqueEmail("race")
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        try await APITestClient(raw).call(.post, "/v1/auth/register", json: ["email": email, "password": "correct horse battery", "display_name": "R"]).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.sorted() == [201, 409, 409, 409])
        }
    }

    @Test func wrongPasswordAndUnknownEmailLookTheSame() async throws {
        var configuration = try GatewayTestSupport.configuration()
        configuration.trustedProxies = ["127.0.0.1", "::1"]
        let dependencies = await GatewayDependencies(configuration: configuration, metrics: GatewayTestSupport.registry, logger: TestEnvironment.logger)
        let hasher = dependencies.accounts.hasher
        try await buildApplication(dependencies, logger: TestEnvironment.logger).test(.live) { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("known")
            _ = try await api.register(email: email)
            let otpOnly = APITestClient.uniqueEmail("codeonly")
            _ = try await dependencies.accounts.accounts.upsertVerifiedUser(email: otpOnly, displayName: "No Password").user
            var bodies: Set<String> = []
            for (label, loginEmail) in [("wrong password", email), ("unknown email", APITestClient.uniqueEmail("nobody")),
                                        ("account without a password", otpOnly), ("malformed email", "not an email")] {
                let before = hasher.verifications
                let response = try await api.call(.post, "/v1/auth/login", json: ["email": loginEmail, "password": "wrong password!"])
                #expect(response.status == 401, "\(label)")
                bodies.insert(response.text)
                // the same Argon2id work whatever the reason, so the time taken tells nothing
                #expect(hasher.verifications - before == 1, "\(label): \(hasher.verifications - before) verifications")
            }
            #expect(bodies.count == 1, "the failures must be indistinguishable: \(bodies)")
        }
    }

    @Test func loginFailuresAreLimitedPerEmailAndAddress() async throws {
        var limits = AccountLimits()
        limits.loginFailures = [RateLimitRule(3, per: .seconds(900))]
        try await self.live(limits: limits) { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("brute")
            _ = try await api.register(email: email)
            for _ in 0..<3 {
                #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "wrong password!"]).status == 401)
            }
            let limited = try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"])
            #expect(limited.status == 429)
            #expect(limited.code == "rate_limited")
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 > 0)
            // parallel guesses from a fresh address cannot all slip under the limit
            let guesser = APITestClient(raw)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<8 {
                    group.addTask { try await guesser.call(.post, "/v1/auth/login", json: ["email": email, "password": "guess \(i)"]).status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 401 }.count == 3, "\(statuses)")
            #expect(statuses.filter { $0 == 429 }.count == 5, "\(statuses)")
            // another address is not affected
            #expect(try await APITestClient(raw).call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"]).status == 200)
        }
    }

    @Test func successfulLoginsDoNotCountAgainstTheLimit() async throws {
        var limits = AccountLimits()
        limits.loginFailures = [RateLimitRule(3, per: .seconds(900))]
        try await self.live(limits: limits) { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("regular")
            _ = try await api.register(email: email)
            // each attempt reserves a slot before the password check; a success gives it back
            for _ in 0..<4 {
                #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "correct horse battery"]).status == 200)
            }
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "wrong password!"]).status == 401)
        }
    }

    @Test func emailCodeSignsInAndCreatesTheAccount() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("code")
            let requested = try await api.call(.post, "/v1/auth/otp/request", json: ["email": " \(email.uppercased()) "])
            #expect(requested.status == 202)
            #expect(requested.text == "{}")
            let code = try await self.mailedCode(for: email)
            #expect(code.count == 6 && code.allSatisfy(\.isNumber))
            // stored only as an HMAC, with a 5-minute lifetime
            let stored = try await self.redis.hgetall("otp:{\(email)}")
            #expect(stored["h"].map { String(buffer: $0) } != code)
            #expect(!stored.values.contains { String(buffer: $0).contains(code) })
            let ttl = try await self.redis.send("TTL", .string("otp:{\(email)}")).int ?? 0
            #expect((290...300).contains(ttl))

            let verified = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code])
            #expect(verified.status == 200)
            let user = try #require(verified.json["user"] as? [String: Any])
            #expect(user["email_verified"] as? Bool == true)
            #expect(user["display_name"] as? String == String(email.split(separator: "@")[0]))
            // single use
            let reused = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code])
            #expect(reused.status == 401)
            #expect(reused.code == "invalid_code")
        }
    }

    @Test func provingAnEmailTakesItOverFromAnUnverifiedRegistration() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("victim")
            // someone registers the address with their own password, unverified
            let (squatterAccess, squatterRefresh, _) = try await api.register(email: email, password: "squatter password")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let code = try await self.mailedCode(for: email)
            let verified = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code])
            #expect(verified.status == 200)
            // the owner now holds the account: the squatter's password and sessions are gone
            #expect(try await api.call(.post, "/v1/auth/login", json: ["email": email, "password": "squatter password"]).status == 401)
            #expect(try await api.call(.get, "/v1/me", token: squatterAccess).status == 401)
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": squatterRefresh]).status == 401)
            let owner = try #require(verified.json["access_token"] as? String)
            #expect(try await api.call(.get, "/v1/me", token: owner).json["email_verified"] as? Bool == true)
        }
    }

    @Test func aSixthAttemptFailsEvenWithTheRightCode() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("guess")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let code = try await self.mailedCode(for: email)
            let wrong = code == "000000" ? "111111" : "000000"
            for _ in 0..<5 {
                #expect(try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": wrong]).code == "invalid_code")
            }
            #expect(try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code]).status == 401)
        }
    }

    @Test func aCodeUsedInParallelSucceedsOnce() async throws {
        try await self.live { raw in
            let email = APITestClient.uniqueEmail("parallel")
            #expect(try await APITestClient(raw).call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let code = try await self.mailedCode(for: email)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await APITestClient(raw).call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code]).status }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 200 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0 == 401 }.count == 7)
        }
    }

    @Test func anExpiredCodeFails() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("late")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            let code = try await self.mailedCode(for: email)
            // let the 5 minutes pass: Redis expires the key
            _ = try await self.redis.send("PEXPIRE", .string("otp:{\(email)}"), 1)
            try await Task.sleep(for: .milliseconds(20))
            #expect(try await api.call(.post, "/v1/auth/otp/verify", json: ["email": email, "code": code]).code == "invalid_code")
        }
    }

    @Test func codeRequestsAreLimitedPerEmailAndPerAddress() async throws {
        var limits = AccountLimits()
        limits.codesPerIP = [RateLimitRule(3, per: .seconds(3600))]
        try await self.live(limits: limits) { raw in
            let api = APITestClient(raw)
            let email = APITestClient.uniqueEmail("limit")
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": email]).status == 202)
            // 1 per 60 s per email, whatever the address
            let again = try await APITestClient(raw).call(.post, "/v1/auth/otp/request", json: ["email": email])
            #expect(again.status == 429)
            #expect(again.code == "rate_limited")
            #expect((50...60).contains(Int(again.headers[.retryAfter] ?? "") ?? 0))
            // 3 per hour per address (test limit), whatever the email
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": APITestClient.uniqueEmail()]).status == 202)
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": APITestClient.uniqueEmail()]).status == 202)
            let limited = try await api.call(.post, "/v1/auth/otp/request", json: ["email": APITestClient.uniqueEmail()])
            #expect(limited.status == 429)
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 > 3000)
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": "nonsense"]).code == "invalid_email")
        }
    }

    @Test func aReusedRefreshTokenRevokesTheSession() async throws {
        var limits = AccountLimits()
        limits.refreshRetryWindow = .zero
        try await self.live(limits: limits) { raw in
            let api = APITestClient(raw)
            let (access, first, _) = try await api.register()
            let rotated = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": first])
            let second = try #require(rotated.json["refresh_token"] as? String)
            let secondAccess = try #require(rotated.json["access_token"] as? String)
            let reused = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": first])
            #expect(reused.status == 401)
            #expect(reused.code == "token_reused")
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": second]).code == "invalid_token")
            #expect(try await api.call(.get, "/v1/me", token: access).status == 401)
            #expect(try await api.call(.get, "/v1/me", token: secondAccess).status == 401)
        }
    }

    @Test func aRefreshRetriedSoonAfterItsRotationGetsTheSameSuccessor() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let (_, first, _) = try await api.register()
            let rotated = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": first])
            let second = try #require(rotated.json["refresh_token"] as? String)
            // the answer was lost: the client sends the same token again
            let retried = try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": first])
            #expect(retried.status == 200)
            #expect(retried.json["refresh_token"] as? String == second, "the same successor")
            let retriedAccess = try #require(retried.json["access_token"] as? String)
            #expect(try await api.call(.get, "/v1/me", token: retriedAccess).status == 200)
            // once the successor is used, the old token is a reuse again: the session ends
            let third = try #require(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": second]).json["refresh_token"] as? String)
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": first]).code == "token_reused")
            #expect(try await api.call(.post, "/v1/auth/refresh", json: ["refresh_token": third]).code == "invalid_token")
            #expect(try await api.call(.get, "/v1/me", token: retriedAccess).status == 401)
        }
    }

    @Test func forgedAndExpiredTokensAreRefused() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let (access, refresh, userID) = try await api.register()
            #expect(try await api.call(.get, "/v1/me", token: access).status == 200)
            let parts = access.split(separator: ".").map(String.init)
            let payloadData = try #require(Secrets.base64URLDecode(parts[1]))
            let claims = try #require(try JSONSerialization.jsonObject(with: payloadData) as? [String: Any])
            let sessionID = try #require(claims["sid"] as? String)
            func encode(_ object: [String: Any]) throws -> String { Secrets.base64URL(try JSONSerialization.data(withJSONObject: object)) }

            var tamperedClaims = claims
            tamperedClaims["sub"] = UUID().uuidString.lowercased()
            let tampered = "\(parts[0]).\(try encode(tamperedClaims)).\(parts[2])"
            let algNone = "\(try encode(["alg": "none", "typ": "JWT"])).\(parts[1])."
            let algHS512Header = "\(try encode(["alg": "HS512", "typ": "JWT"])).\(parts[1]).\(parts[2])"
            let otherKey = await AccessTokens(secret: Array("another-secret-that-is-long-enough-000000".utf8))
            let wrongSignature = try await otherKey.issue(userID: UUID(uuidString: userID)!, sessionID: UUID(uuidString: sessionID)!)
            let tokens = await AccessTokens(secret: try GatewayTestSupport.configuration().jwtSecret)
            let expired61 = try await tokens.issue(userID: UUID(uuidString: userID)!, sessionID: UUID(uuidString: sessionID)!, now: Date().addingTimeInterval(-961))
            let expired30 = try await tokens.issue(userID: UUID(uuidString: userID)!, sessionID: UUID(uuidString: sessionID)!, now: Date().addingTimeInterval(-930))

            for (name, token) in [("tampered", tampered), ("alg none", algNone), ("HS512 header", algHS512Header), ("wrong signature", wrongSignature),
                                  ("expired by 61 s", expired61), ("refresh token as bearer", refresh), ("garbage", "garbage"), ("empty", "")] {
                let response = try await api.call(.get, "/v1/me", token: token)
                #expect(response.status == 401, "\(name) was accepted")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            #expect(try await api.call(.get, "/v1/me").code == "unauthorized")
            // within the 60 s leeway
            #expect(try await api.call(.get, "/v1/me", token: expired30).status == 200)
        }
    }

    /// The header check skips the JSON parse for the headers this service
    /// writes, and only for those.
    @Test func ownTokenHeadersTakeTheShortcutAndNothingElseDoes() async throws {
        #expect(AccessTokens.ownHeaders.count == 2, "both field orders pass the full check")
        let tokens = await AccessTokens(secret: try GatewayTestSupport.configuration().jwtSecret)
        let token = try await tokens.issue(userID: UUID(), sessionID: UUID())
        #expect(AccessTokens.ownHeaders.contains(token.prefix { $0 != "." }), "a token this service signs takes the shortcut")
        #expect(AccessTokens.headerIsHS256(token) && AccessTokens.headerIsHS256(token, parsing: true))
        func header(_ json: String) -> String { Secrets.base64URL(Data(json.utf8)) + ".e30." }
        for refused in [#"{"alg":"none","typ":"JWT"}"#, #"{"alg":"HS512","typ":"JWT"}"#, #"{"alg":"HS256","typ":"JWT","crit":["exp"]}"#, "not json"] {
            #expect(!AccessTokens.headerIsHS256(header(refused)), "\(refused) passed")
        }
        #expect(AccessTokens.headerIsHS256(header(#"{"alg":"HS256"}"#)), "another HS256 header still passes, the long way")
    }

    @Test func profileUpdatesAreValidated() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let (access, _, _) = try await api.register(displayName: "Before")
            let updated = try await api.call(.patch, "/v1/me", json: ["display_name": "  After  ", "email_notifications": false], token: access)
            #expect(updated.status == 200)
            #expect(updated.json["display_name"] as? String == "After")
            #expect(updated.json["email_notifications"] as? Bool == false)
            let unchanged = try await api.call(.patch, "/v1/me", json: [String: Any](), token: access)
            #expect(unchanged.json["display_name"] as? String == "After")
            for (body, code) in [(["display_name": ""], "invalid_display_name"), (["display_name": String(repeating: "x", count: 65)], "invalid_display_name"),
                                 (["display_name": "tab\u{0}"], "invalid_display_name"), (["email_notifications": "yes"], "invalid_request"),
                                 (["display_name": 5], "invalid_request")] as [([String: Any], String)] {
                let response = try await api.call(.patch, "/v1/me", json: body, token: access)
                #expect(response.status == 400, "\(body)")
                #expect(response.code == code, "\(body)")
            }
            #expect(try await api.call(.patch, "/v1/me", raw: "{broken", token: access).code == "invalid_json")
            #expect(try await api.call(.patch, "/v1/me", json: ["display_name": "x"]).status == 401)
        }
    }

    @Test func nobodySeesAnotherUsersEmail() async throws {
        try await self.live { raw in
            let api = APITestClient(raw)
            let unique = "Zed\(UUID().uuidString.prefix(6))"
            let otherEmail = APITestClient.uniqueEmail("other")
            let (_, _, otherID) = try await api.register(email: otherEmail, displayName: "\(unique) Other")
            let (access, _, _) = try await api.register(displayName: "Viewer")

            let byID = try await api.call(.get, "/v1/users/\(otherID)", token: access)
            #expect(byID.status == 200)
            #expect(Set(byID.json.keys) == ["id", "display_name", "created_at"])
            #expect(!byID.text.contains(otherEmail))

            let byPrefix = try await api.call(.get, "/v1/users?query=\(unique.lowercased())&limit=5", token: access)
            let found = try #require(byPrefix.json["users"] as? [[String: Any]])
            #expect(found.map { $0["id"] as? String } == [otherID])
            #expect(!byPrefix.text.contains("@"))

            // an exact email finds an account only once its owner proved the address
            let unverified = try await api.call(.get, "/v1/users?query=\(otherEmail.uppercased())", token: access)
            #expect((unverified.json["users"] as? [Any])?.isEmpty == true)
            #expect(try await api.call(.post, "/v1/auth/otp/request", json: ["email": otherEmail]).status == 202)
            let verified = try await api.call(.post, "/v1/auth/otp/verify", json: ["email": otherEmail, "code": try await self.mailedCode(for: otherEmail)])
            let verifiedID = try #require((verified.json["user"] as? [String: Any])?["id"] as? String)
            let byEmail = try await api.call(.get, "/v1/users?query=\(otherEmail.uppercased())", token: access)
            #expect((byEmail.json["users"] as? [[String: Any]])?.first?["id"] as? String == verifiedID)
            #expect(!byEmail.text.contains(otherEmail))
            let byEmailPrefix = try await api.call(.get, "/v1/users?query=\(otherEmail.prefix(8))@", token: access)
            #expect((byEmailPrefix.json["users"] as? [Any])?.isEmpty == true)

            // wildcards are literal, bad parameters are 400, unknown ids 404
            #expect((try await api.call(.get, "/v1/users?query=%25", token: access).json["users"] as? [Any])?.isEmpty == true)
            #expect(try await api.call(.get, "/v1/users?query=", token: access).code == "invalid_query")
            #expect(try await api.call(.get, "/v1/users?query=a%00b", token: access).code == "invalid_query")
            #expect(try await api.call(.get, "/v1/users?query=a&limit=500", token: access).code == "invalid_limit")
            #expect(try await api.call(.get, "/v1/users/\(UUID().uuidString)", token: access).code == "user_not_found")
            #expect(try await api.call(.get, "/v1/users/not-a-uuid", token: access).code == "user_not_found")
        }
    }
}
