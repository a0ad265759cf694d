import Foundation
import HiredisNIO
public import ParleyCore
public import ParleyChat
import PostgresNIO
public import HTTPTypes
public import Hummingbird

/// An error the client is told about, rendered as `application/problem+json`
/// (RFC 9457) with a stable machine `code` (PROTOCOL.md).
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var detail: String
    /// Seconds, for 429 and 503.
    public var retryAfter: Int?
    /// Extension members added to the problem object.
    public var extra: [String: String]

    public init(_ status: HTTPResponse.Status, _ code: String, _ detail: String, retryAfter: Int? = nil, extra: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.detail = detail
        self.retryAfter = retryAfter
        self.extra = extra
    }

    public static func badRequest(_ code: String, _ detail: String) -> APIError { APIError(.badRequest, code, detail) }
    public static func notFound(_ code: String, _ detail: String) -> APIError { APIError(.notFound, code, detail) }
    public static func unavailable(_ detail: String, retryAfter: Int = 5, extra: [String: String] = [:]) -> APIError {
        APIError(.serviceUnavailable, "unavailable", detail, retryAfter: retryAfter, extra: extra)
    }

    /// 429 `rate_limited`, always with Retry-After.
    public static func rateLimited(_ detail: String, retryAfter: Int) -> APIError {
        APIError(.tooManyRequests, "rate_limited", detail, retryAfter: retryAfter)
    }

    /// A WebSocket upgrade from a browser origin that is not allowed.
    static let forbiddenOrigin = APIError(.forbidden, "forbidden_origin", "this Origin may not open WebSockets (PARLEY_ALLOWED_ORIGINS)")

    public func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: self.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: self.body())))
    }

    /// The problem+json document.
    func body() -> Data {
        var object: [String: Any] = [
            "type": "about:blank",
            "title": self.status.reasonPhrase.isEmpty ? "Error" : self.status.reasonPhrase,
            "status": self.status.code,
            "code": self.code,
            "detail": self.detail,
        ]
        for (key, value) in self.extra where object[key] == nil { object[key] = value }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    }
}

extension APIError {
    /// Maps any error to what the client sees. Unknown errors become a 500
    /// without details (they are logged by the caller).
    static func from(_ error: any Error) -> APIError? {
        switch error {
        case let error as APIError:
            return error
        case let error as ChatError:
            return APIError(error)
        case let error as RateLimited:
            return .rateLimited(error.detail, retryAfter: error.retryAfter)
        case let error as HTTPError:
            return APIError(error.status, Self.code(for: error.status), error.body ?? error.status.reasonPhrase, extra: [:])
        case let error as any HTTPResponseError:
            return APIError(error.status, Self.code(for: error.status), error.status.reasonPhrase)
        case is DatabaseUnavailable:
            return .unavailable("PostgreSQL is unavailable; retry shortly", retryAfter: 2)
        case let error as PSQLError where error.meansUnavailable:
            return .unavailable("PostgreSQL is unavailable; retry shortly", retryAfter: 2)
        case let error as PSQLError where error.serverInfo?[.sqlState] == "55P03":
            // lock_timeout: another writer holds the row longer than a request waits
            return .unavailable("the chat is busy; retry shortly", retryAfter: 1)
        case is PasswordHasher.Busy:
            return .unavailable("too many sign-ins are being checked; retry shortly", retryAfter: 1)
        case is PasswordStrength.Unavailable:
            return .unavailable("passwords cannot be checked right now; retry shortly", retryAfter: 5)
        case let error as RedisError where error.isUnavailable:
            // Redis unreachable or timing out: our dependency is down, not the client's fault.
            return .unavailable("Redis is unavailable (\(error.code)); retry shortly", retryAfter: 2)
        default:
            return nil
        }
    }


    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .badRequest: return "invalid_request"
        case .unauthorized: return "unauthorized"
        case .forbidden: return "forbidden"
        case .notFound: return "not_found"
        case .methodNotAllowed: return "method_not_allowed"
        case .conflict: return "conflict"
        case .contentTooLarge: return "too_large"
        case .unsupportedMediaType: return "unsupported_media_type"
        case .tooManyRequests: return "rate_limited"
        case .serviceUnavailable: return "unavailable"
        default: return status.code >= 500 ? "internal" : "invalid_request"
        }
    }
}

extension APIError {
    /// The one mapping of the chat domain's refusals to HTTP: the status
    /// follows the refusal's kind, the code and detail are the domain's.
    public init(_ error: ChatError) {
        switch error.kind {
        case .invalid: self = .badRequest(error.code.rawValue, error.detail)
        case .notFound: self = .notFound(error.code.rawValue, error.detail)
        case .forbidden: self = APIError(.forbidden, error.code.rawValue, error.detail)
        case .conflict: self = APIError(.conflict, error.code.rawValue, error.detail)
        case .unavailable: self = APIError(.serviceUnavailable, error.code.rawValue, error.detail, retryAfter: error.retryAfter ?? 1)
        }
    }
}
