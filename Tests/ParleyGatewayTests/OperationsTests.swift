import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

@Suite struct OperationsTests {
    /// The operations listener's routes (`/metrics`, detailed `/readyz`).
    static func operations(_ dependencies: GatewayDependencies) -> some ApplicationProtocol {
        Application(router: buildOperationsRouter(dependencies), services: [dependencies.postgres, dependencies.redis], logger: TestEnvironment.logger)
    }

    @Test func healthzAnswers() async throws {
        let app = buildApplication(try await GatewayTestSupport.dependencies(), logger: TestEnvironment.logger)
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "{\"status\":\"ok\"}")
            }
        }
    }

    @Test func readyzFollowsRedisDownAndBackUp() async throws {
        let redis = try RedisServerProcess(password: "ready-secret")
        try await redis.start()
        let app = Self.operations(try await GatewayTestSupport.dependencies(redis: redis.configuration))
        try await app.test(.router) { client in
            // ready once both answer (the first check may race the pools' first connections on a busy machine)
            try await Self.eventuallyReady(client)
            await redis.kill()
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.contentType] == "application/problem+json")
                #expect(response.headers[.retryAfter] != nil)
                let problem = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(problem?["code"] as? String == "unavailable")
                #expect(problem?["redis"] as? String != "ok")
                #expect(problem?["postgres"] as? String == "ok")
                let detail = problem?["detail"] as? String ?? ""
                #expect(detail.contains("redis is down"))
            }
            try await redis.start()
            try await Self.eventuallyReady(client)
        }
        await redis.stop()
    }

    static func eventuallyReady(_ client: some TestClientProtocol) async throws {
        var last: HTTPResponse.Status = .serviceUnavailable
        for _ in 0..<50 {
            last = try await client.execute(uri: "/readyz", method: .get) { $0.status }
            if last == .ok { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        Issue.record("/readyz stayed \(last)")
    }

    @Test func readyzNamesPostgresWhenItIsUnreachable() async throws {
        var configuration = try GatewayTestSupport.configuration()
        configuration.database.port = try TestEnvironment.freePort()
        let dependencies = await GatewayDependencies(configuration: configuration, metrics: GatewayTestSupport.registry, logger: TestEnvironment.logger)
        try await Self.operations(dependencies).test(.router) { client in
            // a fresh client's first Redis connect can outlast the readiness timeout on a
            // machine running the whole suite in parallel: ask again until Redis answers
            var redis: String?
            for _ in 0..<10 where redis != "ok" {
                try await client.execute(uri: "/readyz", method: .get) { response in
                    #expect(response.status == .serviceUnavailable)
                    let problem = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                    #expect(problem?["postgres"] as? String != "ok")
                    redis = problem?["redis"] as? String
                }
            }
            #expect(redis == "ok")
        }
        // the public port says only that something is down, not what or why
        let fresh = await GatewayDependencies(configuration: configuration, metrics: GatewayTestSupport.registry, logger: TestEnvironment.logger)
        try await buildApplication(fresh, logger: TestEnvironment.logger).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] != nil)
                let problem = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(problem?["code"] as? String == "unavailable")
                #expect(problem?["postgres"] == nil && problem?["redis"] == nil)
                let detail = (problem?["detail"] as? String) ?? ""
                #expect(!detail.contains("postgres"))
            }
        }
    }

    @Test func everyGetRouteAnswersHeadWithoutABody() async throws {
        try await buildApplication(try await GatewayTestSupport.dependencies(), logger: TestEnvironment.logger).test(.router) { client in
            for (path, type) in [("/", "text/html"), ("/healthz", "application/json"), ("/openapi.yaml", "application/yaml"), ("/app/app.js", "text/javascript")] {
                try await client.execute(uri: path, method: .head) { response in
                    #expect(response.status == .ok, "HEAD \(path)")
                    #expect(response.headers[.contentType]?.hasPrefix(type) == true, "HEAD \(path): \(response.headers[.contentType] ?? "-")")
                    #expect(response.body.readableBytes == 0, "HEAD \(path) has no body")
                }
            }
            // authenticated routes still want their token
            try await client.execute(uri: "/v1/me", method: .head) { #expect($0.status == .unauthorized) }
        }
        try await Self.operations(try await GatewayTestSupport.dependencies()).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .head) { #expect($0.status == .ok && $0.body.readableBytes == 0) }
        }
    }

    @Test func metricsCountRequestsByRouteAndStatusOffThePublicPort() async throws {
        try await buildApplication(try await GatewayTestSupport.dependencies(), logger: TestEnvironment.logger).test(.router) { client in
            for _ in 0..<3 {
                try await client.execute(uri: "/healthz", method: .get) { _ in }
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .notFound) }
        }
        try await Self.operations(try await GatewayTestSupport.dependencies()).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                let text = String(buffer: response.body)
                let line = text.split(separator: "\n").first { $0.hasPrefix("hb_requests{") && $0.contains("http_route=\"/healthz\"") && $0.contains("http_response_status_code=\"200\"") }
                #expect(line != nil, "no hb_requests line for /healthz in:\n\(text.prefix(2000))")
                if let line, let count = Double(line.split(separator: " ").last ?? "") { #expect(count >= 3) }
                #expect(text.contains("http_server_request_duration"))
            }
        }
    }
}
