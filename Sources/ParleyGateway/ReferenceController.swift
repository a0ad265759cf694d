import Foundation
public import Hummingbird
import ParleyAPIReference

/// `/openapi.yaml`, `/openapi.json` and `/docs`: the API reference of
/// docs/openapi.yaml, embedded in the binary and rendered once per process.
public struct ReferenceController: Sendable {
    /// The three forms, built at first use. The embedded document is
    /// checked by a unit test, so it always parses.
    static let served: (yaml: ByteBuffer, json: ByteBuffer, html: ByteBuffer) = {
        let reference: APIReference
        do {
            reference = try APIReference()
        } catch {
            fatalError("the embedded docs/openapi.yaml does not parse: \(error)")
        }
        return (ByteBuffer(string: APIReference.yaml), ByteBuffer(string: reference.spec.json), ByteBuffer(string: reference.html()))
    }()

    /// Renders the reference now, so that the first request for it does not
    /// pay for parsing and rendering (seconds in a debug build).
    public init() {
        _ = Self.served
    }

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/openapi.yaml") { _, _ in Self.response(Self.served.yaml, type: "application/yaml; charset=utf-8") }
        router.get("/openapi.json") { _, _ in Self.response(Self.served.json, type: "application/json") }
        router.get("/docs") { _, _ in
            var response = Self.response(Self.served.html, type: "text/html; charset=utf-8")
            // nothing but the page itself and its inline styles
            response.headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            return response
        }
    }

    static func response(_ body: ByteBuffer, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "public, max-age=300"
        headers[.xContentTypeOptions] = "nosniff"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
    }
}
