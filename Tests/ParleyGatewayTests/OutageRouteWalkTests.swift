import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

/// Every route of the router, walked with PostgreSQL unreachable: each
/// answers within the deadline, never a 500, and 503 `unavailable` with
/// Retry-After wherever it needs PostgreSQL.
@Suite struct OutageRouteWalkTests {
    /// A valid body for each route that reads one before it needs PostgreSQL
    /// (authenticated routes stop at the session check, which needs it).
    static let bodies: [String: String] = [
        "POST /v1/auth/register": #"{"email": "walk@example.test", "password": "correct horse battery", "display_name": "Walk"}"#,
        "POST /v1/auth/login": #"{"email": "walk@example.test", "password": "correct horse battery"}"#,
        "POST /v1/auth/otp/request": #"{"email": "walk@example.test"}"#,
        "POST /v1/auth/otp/verify": #"{"email": "walk@example.test", "code": "123456"}"#,
        "POST /v1/auth/refresh": #"{"refresh_token": "some-token"}"#,
        "POST /v1/auth/logout": #"{"refresh_token": "some-token"}"#,
    ]

    /// Routes that do not need PostgreSQL, and what they answer without it.
    static let withoutPostgres: [String: Int] = [
        "GET /healthz": 200,
        "POST /v1/auth/otp/request": 202,  // codes live in Redis
        "POST /v1/auth/otp/verify": 401,  // no such code (in Redis): nothing to look up
        "GET /v1/ws": 400,  // not an upgrade
        "GET /openapi.yaml": 200,
        "GET /openapi.json": 200,
        "GET /docs": 200,
        "GET /": 200,  // the web client
        "GET /app/config.json": 200,
        "GET /app/{file}": 404,  // a UUID is no file of it
    ]

    @Test func everyRouteAnswersAPostgreSQLOutageAtOnce() async throws {
        var configuration = try GatewayTestSupport.configuration()
        configuration.database.port = try TestEnvironment.freePort()  // nothing listens there
        configuration.databaseDeadline = .milliseconds(500)
        configuration.readinessTimeout = .milliseconds(500)
        configuration.trustedProxies = ["127.0.0.1", "::1"]
        let dependencies = await GatewayDependencies(configuration: configuration, metrics: GatewayTestSupport.registry, logger: TestEnvironment.logger)
        let token = try await dependencies.accounts.tokens.issue(userID: UUID(), sessionID: UUID())
        let routes = buildRouter(dependencies).routes.map { (method: $0.method, path: $0.path.description) }
        #expect(routes.count > 30, "the walk sees the router's routes")
        try await buildApplication(dependencies, logger: TestEnvironment.logger).test(.router) { client in
            for route in routes {
                let name = "\(route.method) \(route.path)"
                let path = route.path.split(separator: "/").map { part -> String in
                    switch part {
                    case ":seq", "{seq}": return "1"
                    case let part where part.hasPrefix(":") || part.hasPrefix("{"): return UUID().uuidString.lowercased()
                    default: return String(part)
                    }
                }.joined(separator: "/")
                var headers: HTTPFields = [.authorization: "Bearer \(token)", .init("X-Forwarded-For")!: TestEnvironment.randomClientAddress()]
                var body: ByteBuffer?
                if [.post, .put, .patch, .delete].contains(route.method) {
                    headers[.contentType] = "application/json"
                    body = ByteBuffer(string: Self.bodies[name] ?? "{}")
                }
                let started = ContinuousClock.now
                let (status, retryAfter, code) = try await client.execute(uri: "/" + path, method: route.method, headers: headers, body: body) { response in
                    let problem = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                    return (Int(response.status.code), response.headers[.retryAfter], problem?["code"] as? String)
                }
                let elapsed = ContinuousClock.now - started
                #expect(status < 500 || status == 503, "\(name) answered \(status)")
                // a hang detector, not a speed target: without deadlines these
                // routes waited 8 to 60 s; the first ones (the breaker still
                // closed, each waiting out the 0.5 s deadline) took 2.8 s
                // once on a CI machine busy starting every suite at once
                #expect(elapsed < .seconds(6), "\(name) took \(elapsed)")
                if let expected = Self.withoutPostgres[name] {
                    #expect(status == expected, "\(name) answered \(status)")
                } else {
                    #expect(status == 503, "\(name) answered \(status) (\(code ?? "-"))")
                    #expect(code == "unavailable" && retryAfter != nil, "\(name)")
                }
            }
        }
        #expect(dependencies.database.health.state == .open, "after a few failures requests fail fast")
    }
}
