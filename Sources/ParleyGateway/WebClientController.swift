import Crypto
import Foundation
import HTTPTypes
public import Hummingbird
public import ParleyCore
import ParleyWebClient

/// `/` and `/app/{file}`: the web client of web/, embedded in the binary.
/// Strict Content-Security-Policy (scripts and styles from this origin
/// only, nothing inline, WebSockets and REST to this origin); each file is
/// revalidated by its ETag, so a new binary's files are picked up at once.
public struct WebClientController: Sendable {
    /// What the page shows after a code request (PARLEY_WEB_MAIL_HINT):
    /// where development mails go. Nil: nothing.
    let mailHint: String?
    let environment: DeploymentEnvironment

    public init(environment: DeploymentEnvironment, mailHint: String?) {
        self.environment = environment
        self.mailHint = mailHint
    }

    static let policy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
        "connect-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    struct Served: Sendable {
        let body: ByteBuffer
        let contentType: String
        let etag: String
    }

    static let served: [String: Served] = WebClient.files.mapValues { file in
        let digest = SHA256.hash(data: file.bytes).prefix(12).map { String(format: "%02x", $0) }.joined()
        return Served(body: ByteBuffer(bytes: file.bytes), contentType: file.contentType, etag: "\"\(digest)\"")
    }

    public func addRoutes(to router: Router<some RequestContext>) {
        router.get("/") { request, _ in Self.response(Self.served["index.html"]!, request: request) }
        router.get("/app/config.json") { _, _ in
            var response = try Response.json(ClientConfig(environment: self.environment.rawValue, mailHint: self.mailHint))
            response.headers[.cacheControl] = "no-store"
            response.headers[.xContentTypeOptions] = "nosniff"
            return response
        }
        router.get("/app/:file") { request, context in
            guard let name = context.parameters.get("file"), name != "index.html", let file = Self.served[name] else {
                throw APIError(.notFound, "not_found", "no such file of the web client")
            }
            return Self.response(file, request: request)
        }
    }

    struct ClientConfig: Encodable {
        let environment: String
        let mailHint: String?
        enum CodingKeys: String, CodingKey {
            case environment
            case mailHint = "mail_hint"
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(self.environment, forKey: .environment)
            try container.encode(self.mailHint, forKey: .mailHint)  // null when unset
        }
    }

    static func response(_ file: Served, request: Request) -> Response {
        var headers = HTTPFields()
        headers[.cacheControl] = "no-cache"
        headers[.eTag] = file.etag
        headers[.xContentTypeOptions] = "nosniff"
        headers[.contentSecurityPolicy] = Self.policy
        headers[.init("Referrer-Policy")!] = "no-referrer"
        headers[.init("X-Frame-Options")!] = "DENY"
        if request.headers[values: .ifNoneMatch].contains(where: { $0.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == file.etag } }) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = file.contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: file.body))
    }
}
