import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import ParleyCore

/// Requires `Authorization: Bearer <access token>`: a valid, unexpired HS256
/// access token whose session is not revoked. Anything else is 401.
public struct AuthMiddleware: RouterMiddleware {
    public typealias Context = ParleyRequestContext
    let tokens: AccessTokens
    let revocations: SessionRevocations

    public init(tokens: AccessTokens, revocations: SessionRevocations) {
        self.tokens = tokens
        self.revocations = revocations
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "unauthorized", "Authorization: Bearer <access_token> is required")
        }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer ", let identity = await self.tokens.verify(String(header.dropFirst(7))) else {
            throw APIError(.unauthorized, "invalid_token", "the access token is invalid or expired")
        }
        guard try await !self.revocations.isRevoked(identity.sessionID) else {
            throw APIError(.unauthorized, "invalid_token", "the session has ended")
        }
        var context = context
        context.identity = identity
        context.logger[metadataKey: "user.id"] = "\(identity.userID.lowercased)"
        return try await next(request, context)
    }
}

extension ParleyRequestContext {
    /// The caller; set by AuthMiddleware on every authenticated route.
    public func requireIdentity() throws -> Identity {
        guard let identity = self.identity else { throw APIError(.unauthorized, "unauthorized", "authentication required") }
        return identity
    }
}
