import Foundation
public import Hummingbird
import HTTPTypes
import Logging
import PostgresNIO

/// Turns every thrown error into `application/problem+json`. Client errors
/// keep their status and code; anything unexpected is logged (with the
/// request id) and answered with a bare 500 that leaks nothing.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            if let apiError = APIError.from(error) {
                if apiError.status.code >= 500 {
                    context.logger.error("request failed", metadata: ["error.code": "\(apiError.code)", "error.detail": "\(apiError.detail)"])
                }
                return apiError.response()
            }
            var metadata: Logger.Metadata = ["error.type": "\(String(reflecting: type(of: error)))", "error": "\(error)"]
            if let error = error as? PSQLError {
                // The server's message and SQLSTATE, never the query's bound values.
                metadata["db.message"] = "\(error.serverInfo?[.message] ?? "\(error.code)")"
                metadata["db.sqlstate"] = "\(error.serverInfo?[.sqlState] ?? "")"
            }
            context.logger.error("unhandled error", metadata: metadata)
            return APIError(.internalServerError, "internal", "An internal error occurred; it has been logged.").response()
        }
    }
}

/// Echoes the request id (the one in every log line of the request) as `X-Request-Id`.
public struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    public init() {}

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.requestID] = context.id
        return response
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}

/// Behind a load balancer the TCP peer is the proxy: when the peer is one of
/// `trustedProxies`, the client is the right-most X-Forwarded-For address that
/// is not itself a trusted proxy. Untrusted peers cannot spoof their address.
public struct ClientAddressMiddleware: RouterMiddleware {
    public typealias Context = ParleyRequestContext
    let trustedProxies: Set<String>

    public init(trustedProxies: [String]) {
        self.trustedProxies = Set(trustedProxies)
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard self.trustedProxies.contains(context.peerAddress), let forwarded = request.headers[.xForwardedFor] else {
            return try await next(request, context)
        }
        var context = context
        let hops = forwarded.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let client = hops.last(where: { !self.trustedProxies.contains($0) }) ?? hops.first {
            context.clientAddress = String(client.prefix(64))
        }
        return try await next(request, context)
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
