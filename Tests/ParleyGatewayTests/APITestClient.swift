import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing
import ParleyChat

/// A JSON response as tests read it.
struct APIResponse {
    let status: Int
    let headers: HTTPFields
    let body: Data

    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: self.body) as? [String: Any]) ?? [:] }
    var code: String? { self.json["code"] as? String }
    var text: String { String(decoding: self.body, as: UTF8.self) }
}

/// JSON calls against an app under test, each from a client address of its
/// own (X-Forwarded-For through the trusted loopback proxy), so per-IP limits
/// of one test never touch another.
struct APITestClient {
    let client: any TestClientProtocol
    let clientAddress: String

    init(_ client: any TestClientProtocol, clientAddress: String = APITestClient.randomAddress()) {
        self.client = client
        self.clientAddress = clientAddress
    }

    static func randomAddress() -> String { TestEnvironment.randomClientAddress() }

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, json: Any? = nil, raw: String? = nil, token: String? = nil) async throws -> APIResponse {
        var headers: HTTPFields = [.init("X-Forwarded-For")!: self.clientAddress]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json))
        } else if let raw {
            headers[.contentType] = "application/json"
            body = ByteBuffer(string: raw)
        }
        return try await self.client.execute(uri: path, method: method, headers: headers, body: body) { response in
            APIResponse(status: Int(response.status.code), headers: response.headers, body: Data(response.body.readableBytesView))
        }
    }

    /// Uploads `bytes` as an attachment of `type`.
    func upload(token: String, type: String, _ bytes: [UInt8]) async throws -> APIResponse {
        let headers: HTTPFields = [.authorization: "Bearer \(token)", .contentType: type, .init("X-Forwarded-For")!: self.clientAddress]
        return try await self.client.execute(uri: "/v1/attachments", method: .post, headers: headers, body: ByteBuffer(bytes: bytes)) {
            APIResponse(status: Int($0.status.code), headers: $0.headers, body: Data($0.body.readableBytesView))
        }
    }

    /// A unique address on a reserved domain (nothing is ever delivered to it).
    static func uniqueEmail(_ name: String = "user") -> String {
        "\(name)-\(UUID().uuidString.prefix(8).lowercased())@example.test"
    }

    /// Registers and returns (access token, refresh token, user id).
    func register(email: String = APITestClient.uniqueEmail(), password: String = "correct horse battery", displayName: String = "Tester") async throws -> (access: String, refresh: String, userID: String) {
        let response = try await self.call(.post, "/v1/auth/register", json: ["email": email, "password": password, "display_name": displayName])
        try #require(response.status == 201, "register failed: \(response.text)")
        let user = try #require(response.json["user"] as? [String: Any])
        return (try #require(response.json["access_token"] as? String), try #require(response.json["refresh_token"] as? String), try #require(user["id"] as? String))
    }
}

extension GatewayTestSupport {
    /// A live app (real sockets on loopback) with limits suitable for tests.
    static func liveApp(
        limits: AccountLimits = AccountLimits(), chatLimits: ChatLimits = ChatLimits(), push: PushSettings = PushSettings()
    ) async throws -> some ApplicationProtocol {
        var configuration = try self.configuration()
        configuration.trustedProxies = ["127.0.0.1", "::1"]
        configuration.chatLimits = chatLimits
        configuration.push = push
        let dependencies = await GatewayDependencies(configuration: configuration, metrics: self.registry, logger: TestEnvironment.logger, limits: limits)
        return buildApplication(dependencies, logger: TestEnvironment.logger)
    }
}
