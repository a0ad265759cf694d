import Foundation
import ParleyTestSupport
import Testing

/// PostgreSQL is the truth about revoked sessions; Redis only makes them
/// known at once. A Redis that loses everything never brings one back.
@Suite struct RevocationTests {
    static func status(_ gateway: GatewayProcess, _ token: String) async throws -> Int {
        try await HTTP.json("GET", "\(gateway.baseURL)/v1/me", token: token).status
    }

    /// Polls until `gateway` answers `expected` for `token`; returns the seconds it took (nil: never).
    static func secondsUntil(_ expected: Int, _ gateway: GatewayProcess, _ token: String, within limit: Double = 10) async throws -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < limit {
            if try await Self.status(gateway, token) == expected { return Date().timeIntervalSince(start) }
            try await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    @Test func aRevokedSessionStaysRevokedWhenRedisLosesEverything() async throws {
        let redis = try RedisServerProcess(password: "revocations")
        try await redis.start()
        let (a, b) = try await twoGateways(redisURL: redis.url)
        let before = try await E2EUser.register(on: a, name: "Before")
        let during = try await E2EUser.register(on: a, name: "During")
        #expect(try await Self.status(b, during.token) == 200)

        // revoked while Redis is up: known everywhere at once
        #expect(try await HTTP.json("POST", "\(a.baseURL)/v1/auth/logout", ["refresh_token": before.refresh]).status == 204)
        #expect(try await Self.status(b, before.token) == 401)

        // Redis dies and comes back empty (no persistence)
        await redis.kill()
        // revoked while Redis is down: the publish fails, the other instance's poll of PostgreSQL finds it
        #expect(try await HTTP.json("POST", "\(a.baseURL)/v1/auth/logout", ["refresh_token": during.refresh]).status == 204)
        let seconds = try await Self.secondsUntil(401, b, during.token)
        #expect(seconds != nil && seconds! < 6, "the other instance refused the revoked token after \(seconds.map { "\($0)" } ?? "never") s")
        try await redis.start()

        // nothing comes back: not on the old instances, not on a new one
        let c = try GatewayProcess(databaseURL: try TestEnvironment.require("PARLEY_TEST_DATABASE_URL"), redisURL: redis.url, arguments: ["--no-migrate"])
        try await c.waitUntilReady()
        for gateway in [a, b, c] {
            #expect(try await Self.status(gateway, before.token) == 401)
            #expect(try await Self.status(gateway, during.token) == 401)
        }
        // and a session that was never revoked still works everywhere
        let fresh = try await E2EUser.register(on: c, name: "Fresh")
        for gateway in [a, b, c] { #expect(try await Self.status(gateway, fresh.token) == 200) }
    }

    @Test func endingADeviceOrTheAccountClosesItsSocketsOnEveryInstance() async throws {
        let (a, b) = try await twoGateways()
        let user = try await E2EUser.register(on: a, name: "Devices")
        let login = try await HTTP.json("POST", "\(a.baseURL)/v1/auth/login", ["email": user.email, "password": "correct horse battery"], clientAddress: E2EUser.address())
        let phoneToken = try #require(login.json["access_token"] as? String)
        let laptop = try await user.connect(a)
        let phone = try await TestWebSocket.connect("ws://127.0.0.1:\(b.port)/v1/ws")
        try await phone.send(["type": "hello", "token": phoneToken])
        _ = try await phone.next("ready")

        let sessions = try await HTTP.json("GET", "\(a.baseURL)/v1/me/sessions", token: user.token)
        let phoneSession = try #require((sessions.json["sessions"] as? [[String: Any]])?.first { $0["current"] as? Bool == false }?["id"] as? String)
        #expect(try await HTTP.json("DELETE", "\(a.baseURL)/v1/me/sessions/\(phoneSession)", token: user.token).status == 204)
        #expect(await phone.waitForClose() == 4001, "the phone's socket on the other instance")
        try await laptop.send(["type": "ping", "ref": "still here"])
        #expect(try await laptop.next("pong")["ref"] as? String == "still here")

        #expect(try await HTTP.json("DELETE", "\(b.baseURL)/v1/me", ["password": "correct horse battery"], token: user.token).status == 204)
        #expect(await laptop.waitForClose() == 4001, "a deleted account's sockets close everywhere")
    }
}
