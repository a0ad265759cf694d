import Foundation
import ParleyTestSupport
import Testing

/// Limits, sessions and revocations are shared by every gateway instance.
@Suite struct AccountsAcrossInstancesTests {
    static func address() -> String { TestEnvironment.randomClientAddress() }
    static func email(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8).lowercased())@example.test" }

    func twoGateways() async throws -> (GatewayProcess, GatewayProcess) {
        let databaseURL = try TestEnvironment.require("PARLEY_TEST_DATABASE_URL")
        let a = try GatewayProcess(databaseURL: databaseURL, arguments: ["--no-migrate"])
        let b = try GatewayProcess(databaseURL: databaseURL, arguments: ["--no-migrate"])
        try await a.waitUntilReady()
        try await b.waitUntilReady()
        return (a, b)
    }

    @Test func limitsAndSessionsHoldAcrossTwoInstances() async throws {
        let (a, b) = try await self.twoGateways()

        // one code request per minute per email, wherever it lands
        let codeEmail = Self.email("otp")
        #expect(try await HTTP.json("POST", "\(a.baseURL)/v1/auth/otp/request", ["email": codeEmail], clientAddress: Self.address()).status == 202)
        let second = try await HTTP.json("POST", "\(b.baseURL)/v1/auth/otp/request", ["email": codeEmail], clientAddress: Self.address())
        #expect(second.status == 429)
        #expect(second.json["code"] as? String == "rate_limited")

        // 10 failed logins per email and address, counted on both instances together
        let email = Self.email("login")
        let address = Self.address()
        let registered = try await HTTP.json("POST", "\(a.baseURL)/v1/auth/register", ["email": email, "password": "correct horse battery", "display_name": "E2E"], clientAddress: address)
        #expect(registered.status == 201)
        for attempt in 0..<10 {
            let gateway = attempt % 2 == 0 ? a : b
            #expect(try await HTTP.json("POST", "\(gateway.baseURL)/v1/auth/login", ["email": email, "password": "wrong \(attempt)"], clientAddress: address).status == 401)
        }
        let blocked = try await HTTP.json("POST", "\(b.baseURL)/v1/auth/login", ["email": email, "password": "correct horse battery"], clientAddress: address)
        #expect(blocked.status == 429)

        // a session started on A refreshes on B; logout on B ends it on A as soon as A hears
        // of it on Redis (milliseconds; at most one PostgreSQL poll, 2 s, if Redis lost it),
        // and its refresh token at once (checked in PostgreSQL)
        let access = try #require(registered.json["access_token"] as? String)
        let refresh = try #require(registered.json["refresh_token"] as? String)
        #expect(try await HTTP.json("GET", "\(a.baseURL)/v1/me", token: access).status == 200)
        let rotated = try await HTTP.json("POST", "\(b.baseURL)/v1/auth/refresh", ["refresh_token": refresh])
        #expect(rotated.status == 200)
        let next = try #require(rotated.json["refresh_token"] as? String)
        #expect(try await HTTP.json("POST", "\(b.baseURL)/v1/auth/logout", ["refresh_token": next]).status == 204)
        #expect(try await HTTP.json("POST", "\(a.baseURL)/v1/auth/refresh", ["refresh_token": next]).status == 401)
        try await eventually(timeout: .seconds(3)) { try await HTTP.json("GET", "\(a.baseURL)/v1/me", token: access).status == 401 }

        let logs = a.child.outputText + b.child.outputText
        for secret in [access, refresh, next, "correct horse battery"] {
            #expect(!logs.contains(secret), "a secret reached the logs")
        }
    }
}
