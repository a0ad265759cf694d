import Foundation
import ParleyTestSupport
import Testing

/// A user of the end-to-end tests: registered through a gateway's REST API.
struct E2EUser {
    let email: String
    let id: String
    let token: String
    let refresh: String

    static func register(on gateway: any Endpoint, name: String = "E2E") async throws -> E2EUser {
        let local = String(name.lowercased().unicodeScalars.filter { $0.isASCII && CharacterSet.alphanumerics.contains($0) })
        let email = "\(local.isEmpty ? "user" : local)-\(UUID().uuidString.prefix(8).lowercased())@example.test"
        let response = try await HTTP.json("POST", "\(gateway.baseURL)/v1/auth/register", ["email": email, "password": "correct horse battery", "display_name": name], clientAddress: Self.address())
        try #require(response.status == 201, "register: \(response)")
        let user = try #require(response.json["user"] as? [String: Any])
        return E2EUser(email: email, id: try #require(user["id"] as? String), token: try #require(response.json["access_token"] as? String), refresh: try #require(response.json["refresh_token"] as? String))
    }

    static func address() -> String { TestEnvironment.randomClientAddress() }

    /// Proves the user's address with a code mail (a mailer and the test SMTP catcher must run).
    func verifyEmail(on gateway: any Endpoint) async throws {
        #expect(try await HTTP.json("POST", "\(gateway.baseURL)/v1/auth/otp/request", ["email": self.email], clientAddress: Self.address()).status == 202)
        let mail = try #require(try await MailCatcher.wait(for: self.email).last)
        let code = try #require(mail.text.range(of: #"\d{6}"#, options: .regularExpression).map { String(mail.text[$0]) })
        let verified = try await HTTP.json("POST", "\(gateway.baseURL)/v1/me/email/verify", ["code": code], token: self.token)
        try #require(verified.json["email_verified"] as? Bool == true, "\(verified)")
    }

    /// Opens /v1/ws on `gateway` and says hello; returns after `ready`.
    func connect(_ gateway: any Endpoint, resume: [String: Int] = [:]) async throws -> TestWebSocket {
        let socket = try await TestWebSocket.connect("ws://127.0.0.1:\(gateway.port)/v1/ws")
        try await socket.send(["type": "hello", "token": self.token, "resume": resume])
        let ready = try await socket.next("ready")
        #expect(ready["user_id"] as? String == self.id)
        return socket
    }

    func post(_ gateway: any Endpoint, _ path: String, _ body: [String: Any]) async throws -> (status: Int, json: [String: Any]) {
        try await HTTP.json("POST", "\(gateway.baseURL)\(path)", body, token: self.token)
    }

    /// The chat's newest seq as this member reads it over REST (0 when empty):
    /// what tests wait on to know that sends are being stored.
    func lastSeq(on gateway: any Endpoint, _ chat: String) async throws -> Int {
        let page = try await HTTP.json("GET", "\(gateway.baseURL)/v1/chats/\(chat)/messages?limit=1", token: self.token)
        return ((page.json["messages"] as? [[String: Any]])?.last?["seq"] as? Int) ?? 0
    }

    func group(on gateway: any Endpoint, members: [E2EUser]) async throws -> String {
        let response = try await self.post(gateway, "/v1/chats", ["kind": "group", "title": "E2E", "member_ids": members.map(\.id)])
        try #require(response.status == 201)
        return try #require(response.json["id"] as? String)
    }
}

/// Two gateway processes on the shared test database and Redis (the second
/// with `secondEnvironment` if given, else the same `environment`).
func twoGateways(
    environment: [String: String] = [:], secondEnvironment: [String: String]? = nil, redisURL: String? = nil
) async throws -> (GatewayProcess, GatewayProcess) {
    let databaseURL = try TestEnvironment.require("PARLEY_TEST_DATABASE_URL")
    let a = try GatewayProcess(databaseURL: databaseURL, redisURL: redisURL, environment: environment, arguments: ["--no-migrate"])
    let b = try GatewayProcess(databaseURL: databaseURL, redisURL: redisURL, environment: secondEnvironment ?? environment, arguments: ["--no-migrate"])
    try await a.waitUntilReady()
    try await b.waitUntilReady()
    return (a, b)
}

extension Dictionary where Key == String, Value == Any {
    var messageSeq: Int? { (self["message"] as? [String: Any])?["seq"] as? Int }
    var messageChat: String? { (self["message"] as? [String: Any])?["chat_id"] as? String }
}
