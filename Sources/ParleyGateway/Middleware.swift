public import Hummingbird
import HTTPTypes
import Logging

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
            context.logger.error("unhandled error", metadata: ["error.type": "\(String(reflecting: type(of: error)))", "error": "\(error)"])
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
