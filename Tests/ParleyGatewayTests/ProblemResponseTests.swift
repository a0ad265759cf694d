import Foundation
import Hummingbird
import HTTPTypes
import HummingbirdTesting
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

/// Every error is application/problem+json with a stable code; bad input is never a 5xx.
@Suite struct ProblemResponseTests {
    struct Probe: Decodable {
        let name: String
        let count: Int
        let tags: [String]?
    }

    func app() async throws -> some ApplicationProtocol {
        buildApplication(try await GatewayTestSupport.dependencies(), logger: TestEnvironment.logger) { router in
            // A JSON route using the shared decoding every real route uses.
            router.post("/test/echo") { request, context -> String in
                let probe = try await request.decodeJSON(Probe.self, context: context)
                return "\(probe.name):\(probe.count)"
            }
            router.get("/test/crash") { _, _ -> String in
                struct Boom: Error {}
                throw Boom()
            }
        }
    }

    static func problem(_ response: TestResponse) throws -> [String: Any] {
        #expect(response.headers[.contentType] == "application/problem+json")
        let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        let problem = try #require(object)
        #expect(problem["type"] as? String == "about:blank")
        #expect(problem["status"] as? Int == Int(response.status.code))
        #expect(problem["title"] is String)
        #expect(problem["detail"] is String)
        return problem
    }

    @Test func unknownRouteIs404Problem() async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/v1/nope", method: .get) { response in
                #expect(response.status == .notFound)
                let problem = try Self.problem(response)
                #expect(problem["code"] as? String == "not_found")
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] != nil)
            }
        }
    }

    @Test(arguments: [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "invalid_request"),
        ("{\"name\": 5, \"count\": 1}", "invalid_request"),
        ("{\"name\": \"a\"}", "invalid_request"),
        ("{\"name\": \"a\", \"count\": \"7\"}", "invalid_request"),
        ("{\"name\": \"a\", \"count\": 1.5}", "invalid_request"),
        ("{\"name\": null, \"count\": 1}", "invalid_request"),
        ("{\"name\": \"a\", \"count\": 1, \"tags\": [1]}", "invalid_request"),
        ("\u{FEFF}\u{0000}", "invalid_json"),
    ])
    func malformedBodiesAre400(body: String, code: String) async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/test/echo", method: .post, headers: [.contentType: "application/json"], body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest)
                let problem = try Self.problem(response)
                #expect(problem["code"] as? String == code)
            }
        }
    }

    @Test func problemDetailNamesTheField() async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/test/echo", method: .post, body: ByteBuffer(string: "{\"name\": \"a\", \"count\": 1, \"tags\": [\"x\", 2]}")) { response in
                let problem = try Self.problem(response)
                #expect(problem["detail"] as? String == "tags.[1]: expected a string")
            }
        }
    }

    @Test func validBodyIsAccepted() async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/test/echo", method: .post, body: ByteBuffer(string: "{\"name\": \"ü\", \"count\": 3}")) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "ü:3")
            }
        }
    }

    @Test func oversizedBodyIs413AndWrongTypeIs415() async throws {
        try await self.app().test(.router) { client in
            let big = "{\"name\": \"" + String(repeating: "a", count: 70 * 1024) + "\", \"count\": 1}"
            try await client.execute(uri: "/test/echo", method: .post, body: ByteBuffer(string: big)) { response in
                #expect(response.status == .contentTooLarge)
                let problem = try Self.problem(response)
                #expect(problem["code"] as? String == "too_large")
            }
            try await client.execute(uri: "/test/echo", method: .post, headers: [.contentType: "text/plain"], body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .unsupportedMediaType)
                let problem = try Self.problem(response)
                #expect(problem["code"] as? String == "unsupported_media_type")
            }
        }
    }

    @Test func unexpectedErrorsAreA500ThatLeaksNothing() async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/test/crash", method: .get) { response in
                #expect(response.status == .internalServerError)
                let problem = try Self.problem(response)
                #expect(problem["code"] as? String == "internal")
                #expect(!(problem["detail"] as? String ?? "").contains("Boom"))
            }
        }
    }

    @Test func wrongMethodOnAKnownRouteIsAProblemToo() async throws {
        try await self.app().test(.router) { client in
            try await client.execute(uri: "/healthz", method: .delete) { response in
                #expect(response.status.code >= 400 && response.status.code < 500)
                _ = try Self.problem(response)
            }
        }
    }
}
