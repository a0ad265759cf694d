import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import ParleyCore

/// `/v1/me` and `/v1/users`: authenticated.
public struct UsersController: Sendable {
    let services: AccountServices

    public init(services: AccountServices) {
        self.services = services
    }

    public func addRoutes(to group: RouterGroup<ParleyRequestContext>) {
        self.addSessionRoutes(to: group)
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
            try await self.limitProfileChanges(identity.userID)
            guard let user = try await self.services.accounts.updateUser(id: identity.userID, displayName: displayName, emailNotifications: body.emailNotifications) else {
                throw APIError(.unauthorized, "invalid_token", "the account no longer exists")
            }
            return try Response.json(UserBody.own(user))
        }
        // blocks (PROTOCOL.md 1.1): what they refuse is enforced by the chat store
        group.get("me/blocks") { _, context in
            let me = try context.requireIdentity().userID
            return try Response.json(UserList(users: try await self.services.accounts.blocks(of: me).map(UserBody.visible)))
        }
        for (method, block) in [(HTTPRequest.Method.put, true), (.delete, false)] {
            group.on("me/blocks/:user_id", method: method) { _, context in
                let me = try context.requireIdentity().userID
                guard let other = context.parameters.get("user_id").flatMap(UUID.init(uuidString:)) else {
                    throw APIError.notFound("user_not_found", "no such user")
                }
                guard other != me else { throw APIError.badRequest("invalid_user", "you cannot block yourself") }
                try await self.limitProfileChanges(me)
                if block {
                    guard try await self.services.accounts.block(other, by: me) else { throw APIError.notFound("user_not_found", "no such user") }
                } else {
                    try await self.services.accounts.unblock(other, by: me)
                }
                return Response.noContent()
            }
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
                // Exact email only: an address can be found, never listed by
                // prefix, and only by the owner who proved it (not whoever typed it first).
                users = try await AccountValidation.normalizeEmail(query).asyncMap { try await self.services.accounts.verifiedUser(email: $0) }.map { [$0] } ?? []
            } else {
                users = try await self.services.accounts.searchUsers(displayNamePrefix: query, limit: limit)
            }
            return try Response.json(UserList(users: users.map(UserBody.visible)))
        }
    }

    func limitProfileChanges(_ userID: UUID) async throws {
        try await self.services.limitProfileChanges(userID)
    }

    func addSessionRoutes(to group: RouterGroup<ParleyRequestContext>) {
        group.get("me/sessions") { _, context in
            let identity = try context.requireIdentity()
            let sessions = try await self.services.accounts.sessions(of: identity.userID)
            return try Response.json(SessionListBody(sessions: sessions.map { SessionBody($0, current: $0.id == identity.sessionID) }))
        }
        group.delete("me/sessions/:session_id") { _, context in
            let identity = try context.requireIdentity()
            try await self.limitProfileChanges(identity.userID)
            guard let sessionID = context.parameters.get("session_id").flatMap(UUID.init(uuidString:)),
                try await self.services.accounts.revokeSession(sessionID, of: identity.userID)
            else { throw APIError.notFound("session_not_found", "no such session") }
            // that device's sockets close with 4001 on every instance
            await self.services.revocations.revoke(sessionID, logger: context.logger)
            return Response.noContent()
        }
        group.delete("me") { request, context in try await self.deleteAccount(request, context) }
        group.post("me/email/verify") { request, context in
            // a signed-in user proves their own address with a code from POST /v1/auth/otp/request
            // (signing in with such a code instead would take the address for a new account)
            let body = try await request.decodeJSON(VerifyEmailRequest.self, context: context)
            let user = try await self.currentUser(context)
            try await self.services.checkCode(body.code, email: user.email)
            guard let verified = try await self.services.accounts.markEmailVerified(user.id) else {
                throw APIError(.unauthorized, "invalid_token", "the account no longer exists")
            }
            return try Response.json(UserBody.own(verified))
        }
    }



    /// `DELETE /v1/me` with the password, or with a fresh email code (for
    /// accounts without one): the account is deleted (`AccountStore.deleteAccount`).
    func deleteAccount(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(DeleteAccountRequest.self, context: context)
        let user = try await self.currentUser(context)
        if let password = body.password {
            // guesses count against the account, as failed logins do
            let slots = try await self.services.reserve([("login:\(user.email)", self.services.limits.loginFailuresPerAccount)], "too many wrong passwords; try again later")
            guard try await self.services.hasher.verify(password, against: user.passwordHash) else {
                throw APIError(.unauthorized, "invalid_credentials", "the password is wrong")
            }
            try await self.services.giveBack(slots)
        } else if let code = body.code {
            try await self.services.checkCode(code, email: user.email)
        } else {
            throw APIError.badRequest("invalid_request", "give the account's password, or a code from POST /v1/auth/otp/request")
        }
        guard let deletion = try await self.services.accounts.deleteAccount(user.id, reason: "account_deleted") else {
            throw APIError(.unauthorized, "invalid_token", "the account no longer exists")
        }
        context.logger.notice("account deleted", metadata: ["user.id": "\(user.id.lowercased)"])
        await self.services.announce(deletion, logger: context.logger)
        return Response.noContent()
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
