import Foundation
import Hummingbird
import HummingbirdTesting
import ParleyAPIReference
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import Testing

/// docs/openapi.yaml against the router, and the three forms it is served in.
@Suite struct APIReferenceTests {
    @Test func theReferenceListsExactlyTheRoutesOfTheRouter() async throws {
        let reference = try APIReference()
        let router = buildRouter(try await GatewayTestSupport.dependencies())
        let routes = Set(router.routes.map { route in
            // Hummingbird writes captures as {name} (":name" in older versions)
            let path = route.path.description.split(separator: "/", omittingEmptySubsequences: false).map { part in
                part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
            }.joined(separator: "/")
            return "\(route.method) \(path)"
        })
        let documented = reference.operations.map { "\($0.method) \($0.path)" }
        #expect(Set(documented).count == documented.count, "an operation is listed twice")
        #expect(routes.subtracting(documented).sorted() == [], "routes missing from docs/openapi.yaml")
        #expect(Set(documented).subtracting(routes).sorted() == [], "operations in docs/openapi.yaml that the router does not serve")
    }

    @Test func everyOperationIsCompleteAndEveryReferenceResolves() throws {
        let reference = try APIReference()
        #expect(reference.spec["openapi"]?.string?.hasPrefix("3.1") == true)
        var ids: Set<String> = []
        for operation in reference.operations {
            let name = "\(operation.method) \(operation.path)"
            let id = operation.value["operationId"]?.string
            #expect(id != nil, "\(name) has no operationId")
            if let id { #expect(ids.insert(id).inserted, "operationId \(id) is used twice") }
            #expect(operation.value["summary"]?.string != nil, "\(name) has no summary")
            #expect(!(operation.value["responses"]?.pairs.isEmpty ?? true), "\(name) documents no response")
        }
        // every $ref anywhere points at something that exists
        func refs(_ value: SpecValue) -> [String] {
            switch value {
            case .object(let pairs): return pairs.flatMap { key, value in key == "$ref" ? [value.string ?? ""] : refs(value) }
            case .array(let items): return items.flatMap(refs)
            default: return []
            }
        }
        for ref in Set(refs(reference.spec)) {
            let resolved = reference.resolve(.object([("$ref", .string(ref))]))
            #expect(resolved["$ref"] == nil, "\(ref) does not resolve")
        }
    }

    @Test func theJSONFormIsTheSameDocument() throws {
        let reference = try APIReference()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(reference.spec.json.utf8)) as? [String: Any])
        #expect(json["openapi"] as? String == reference.spec["openapi"]?.string)
        #expect((json["paths"] as? [String: Any])?.count == reference.spec["paths"]?.pairs.count)
        // YAML scalars keep their meaning: numbers stay numbers, quoted text stays text
        let parsed = try SpecValue.parse(yaml: "a: 1\nb: '1'\nc: true\nd: null\ne: 2026-11-21T10:04:05.123Z\nf: 1.5\n200: ok\n")
        #expect(parsed.json == #"{"a":1,"b":"1","c":true,"d":null,"e":"2026-11-21T10:04:05.123Z","f":1.5,"200":"ok"}"#)
        #expect(throws: (any Error).self) { try SpecValue.parse(yaml: "a: 1\na: 2\n") }  // a key given twice
    }

    @Test func theHTMLPageShowsEveryOperationAndRunsNothing() throws {
        let reference = try APIReference()
        let html = reference.html()
        for operation in reference.operations {
            #expect(html.contains("id=\"\(operation.value["operationId"]?.string ?? "")\""), "\(operation.method) \(operation.path) is not on the page")
        }
        #expect(!html.lowercased().contains("<script"))
        #expect(!html.contains(" src=") && !html.contains("<link") && !html.contains("@import"), "the page loads nothing")
        // text from the document is escaped
        let hostile = try APIReference(yaml: """
            openapi: 3.1.0
            info: {title: "<script>alert(1)</script>", version: "1"}
            paths:
              /x:
                get:
                  operationId: x
                  summary: "<img src=x onerror=alert(1)>"
                  responses: {"200": {description: ok}}
            """)
        let page = hostile.html()
        #expect(!page.contains("<script>alert") && !page.contains("<img src=x"))
        #expect(page.contains("&lt;img src=x onerror=alert(1)&gt;"))
    }

    @Test func everyGatewayServesTheReference() async throws {
        try await buildApplication(try await GatewayTestSupport.dependencies(), logger: TestEnvironment.logger).test(.router) { client in
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true)
                #expect(String(buffer: response.body) == APIReference.yaml)
            }
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let json = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                #expect(json?["openapi"] as? String == "3.1.0")
            }
            try await client.execute(uri: "/docs", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                #expect(response.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
                #expect(String(buffer: response.body).contains("<h2 id=\"websocket\">"))
            }
        }
    }
}
