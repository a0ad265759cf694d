import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ParleyCore
@testable import ParleyGateway
import ParleyWebClient
import Testing

/// The web client's files as the gateway serves them: every file the page
/// loads exists, nothing runs inline, the policy forbids anything else.
@Suite struct WebClientTests {
    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        WebClientController(environment: .development, mailHint: "see the outbox").addRoutes(to: router)
        return router
    }

    @Test func thePageAndEveryFileItLoadsAreServedWithAStrictPolicy() async throws {
        let page = String(decoding: WebClient.files["index.html"]!.bytes, as: UTF8.self)
        let handler = try Regex(#"\son[a-z]+\s*="#)
        #expect(!page.contains("<script>") && page.firstMatch(of: handler) == nil, "no inline scripts or handlers")
        // every /app/ reference of the page and of the modules is a file that exists
        var referenced: Set<String> = []
        for file in WebClient.files.values where file.name.hasSuffix(".html") || file.name.hasSuffix(".js") {
            let text = String(decoding: file.bytes, as: UTF8.self)
            let pattern = try Regex(#"(?:/app/|\./)([a-z]+\.(?:js|css|svg))\b"#)
            for match in text.matches(of: pattern) { referenced.insert(String(match.output[1].substring!)) }
        }
        #expect(referenced.contains("app.js") && referenced.contains("style.css"))
        #expect(referenced.isSubset(of: Set(WebClient.files.keys)), "missing: \(referenced.subtracting(WebClient.files.keys))")

        try await Application(router: Self.router()).test(.router) { client in
            let root = try await client.execute(uri: "/", method: .get)
            #expect(root.status == .ok)
            #expect(root.headers[.contentType] == "text/html; charset=utf-8")
            let policy = try #require(root.headers[.contentSecurityPolicy])
            #expect(policy.contains("script-src 'self'") && policy.contains("default-src 'none'") && !policy.contains("unsafe"))
            let etag = try #require(root.headers[.eTag])
            let again = try await client.execute(uri: "/", method: .get, headers: [.ifNoneMatch: etag])
            #expect(again.status == .notModified)
            #expect(again.body.readableBytes == 0)
            for name in WebClient.files.keys where name != "index.html" {
                let response = try await client.execute(uri: "/app/\(name)", method: .get)
                #expect(response.status == .ok, "\(name)")
                #expect(response.headers[.contentType] == WebClient.files[name]!.contentType)
                #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            }
            for missing in ["/app/nope.js", "/app/..%2Fsecret", "/app/index.html"] {
                let response = try await client.execute(uri: missing, method: .get)
                #expect(response.status == .notFound, "\(missing)")
                #expect(response.headers[.contentType] == "application/problem+json")
            }
            let config = try await client.execute(uri: "/app/config.json", method: .get)
            let json = try JSONSerialization.jsonObject(with: Data(config.body.readableBytesView)) as? [String: Any]
            #expect(json?["environment"] as? String == "development")
            #expect(json?["mail_hint"] as? String == "see the outbox")
        }
    }

    @Test func socketsFromTheGatewaysOwnOriginOrAListedOneOnly() {
        let listed: Set<String> = ["https://chat.example.com"]
        #expect(RealtimeRoutes.originAllowed([], allowed: listed, host: "gw:8080"), "not a browser")
        #expect(RealtimeRoutes.originAllowed(["https://chat.example.com"], allowed: listed, host: "gw:8080"))
        #expect(RealtimeRoutes.originAllowed(["http://gw:8080"], allowed: listed, host: "GW:8080"), "its own origin")
        #expect(RealtimeRoutes.originAllowed(["https://chat.example.com"], allowed: [], host: "chat.example.com"), "behind TLS on the default port")
        #expect(!RealtimeRoutes.originAllowed(["http://gw:8081"], allowed: listed, host: "gw:8080"))
        #expect(!RealtimeRoutes.originAllowed(["http://evil.example"], allowed: listed, host: nil))
        #expect(!RealtimeRoutes.originAllowed(["null"], allowed: listed, host: "gw:8080"))
        #expect(!RealtimeRoutes.originAllowed(["http://gw:8080", "http://evil.example"], allowed: [], host: "gw:8080"))
    }
}
