import Foundation
public import Hummingbird
import ParleyCore

/// `/v1/me` and `/v1/users`: authenticated.
public struct UsersController: Sendable {
    let services: AccountServices

    public init(services: AccountServices) {
        self.services = services
    }

    public func addRoutes(to group: RouterGroup<ParleyRequestContext>) {
        group.get("me") { _, context in
            try Response.json(UserBody.own(try await self.currentUser(context)))
        }
        group.patch("me") { request, context in
            let body = try await request.decodeJSON(UpdateMeRequest.self, context: context)
            var displayName: String?
            if let raw = body.displayName {
                guard let valid = AccountValidation.displayName(raw) else {
                    throw APIError.badRequest("invalid_display_name", "display_name must be 1 to 64 characters without control or bidirectional override characters")
                }
                displayName = valid
            }
            let identity = try context.requireIdentity()
            guard let user = try await self.services.accounts.updateUser(id: identity.userID, displayName: displayName, emailNotifications: body.emailNotifications) else {
                throw APIError(.unauthorized, "invalid_token", "the account no longer exists")
            }
            return try Response.json(UserBody.own(user))
        }
        group.get("users/:id") { _, context in
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), let user = try await self.services.accounts.user(id: id) else {
                throw APIError.notFound("user_not_found", "no such user")
            }
            return try Response.json(UserBody.visible(user))
        }
        group.get("users") { request, context in
            let query = request.uri.queryParameters.get("query")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            guard !query.isEmpty, query.count <= 254, !MessageValidation.hasForbiddenControl(query) else {
                throw APIError.badRequest("invalid_query", "query must be 1 to 254 characters")
            }
            var limit = 20
            if let raw = request.uri.queryParameters.get("limit") {
                guard let value = Int(raw), (1...50).contains(value) else { throw APIError.badRequest("invalid_limit", "limit must be an integer from 1 to 50") }
                limit = value
            }
            let users: [UserRecord]
            if query.contains("@") {
                // Exact email only: an address can be found, never listed by prefix.
                users = try await AccountValidation.normalizeEmail(query).asyncMap { try await self.services.accounts.user(email: $0) }.map { [$0] } ?? []
            } else {
                users = try await self.services.accounts.searchUsers(displayNamePrefix: query, limit: limit)
            }
            return try Response.json(UserList(users: users.map(UserBody.visible)))
        }
    }

    func currentUser(_ context: ParleyRequestContext) async throws -> UserRecord {
        guard let user = try await self.services.accounts.user(id: try context.requireIdentity().userID) else {
            throw APIError(.unauthorized, "invalid_token", "the account no longer exists")
        }
        return user
    }
}

extension Optional {
    /// `flatMap` for an async transform.
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T?) async rethrows -> T? {
        guard let value = self else { return nil }
        return try await transform(value)
    }
}
