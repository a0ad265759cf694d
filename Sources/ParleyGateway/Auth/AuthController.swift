import Foundation
import HiredisNIO
public import Hummingbird
import Logging
import ParleyCore
import ParleyChat

/// `/v1/auth/*`: register, login, email codes, refresh, logout.
public struct AuthController: Sendable {
    let services: AccountServices

    public init(services: AccountServices) {
        self.services = services
    }

    public func addRoutes(to group: RouterGroup<ParleyRequestContext>) {
        group.post("register") { request, context in try await self.register(request, context) }
        group.post("login") { request, context in try await self.login(request, context) }
        group.post("otp/request") { request, context in try await self.requestCode(request, context) }
        group.post("otp/verify") { request, context in try await self.verifyCode(request, context) }
        group.post("refresh") { request, context in try await self.refresh(request, context) }
        group.post("logout") { request, context in try await self.logout(request, context) }
    }

    func register(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(RegisterRequest.self, context: context)
        guard let email = AccountValidation.normalizeEmail(body.email) else {
            throw APIError.badRequest("invalid_email", "email is not a valid address")
        }
        guard AccountValidation.isAcceptablePassword(body.password) else {
            throw APIError.badRequest("invalid_password", "password must be 8 to 256 characters")
        }
        guard let displayName = AccountValidation.displayName(body.displayName) else {
            throw APIError.badRequest("invalid_display_name", "display_name must be 1 to 64 characters without control or bidirectional override characters")
        }
        try await self.services.limit("register:\(context.limitAddress)", self.services.limits.registrationsPerAddress, "too many registrations from this address; try again later")
        try self.services.accounts.requireAvailable()
        // a taken address, or PostgreSQL down, is answered before the password
        // is checked and hashed (cracklib runs one at a time per process, and
        // Argon2id is the expensive part; the insert below still settles a
        // race for the address)
        if try await self.services.accounts.user(email: email) != nil {
            throw APIError(.conflict, "email_taken", "an account with this email exists")
        }
        if let problem = try self.services.passwordStrength.problem(body.password) {
            throw APIError.badRequest("weak_password", "choose a password that is harder to guess: \(problem)")
        }
        let hash = try await self.services.hasher.hash(body.password)
        guard let user = try await self.services.accounts.createUser(email: email, displayName: displayName, passwordHash: hash) else {
            throw APIError(.conflict, "email_taken", "an account with this email exists")
        }
        context.logger.info("account registered", metadata: ["user.id": "\(user.id.lowercased)"])
        await self.services.publisher.publish(.userRegistered(userID: user.id), logger: context.logger)
        return try await self.startSession(for: user, request: request, status: .created)
    }

    func login(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(LoginRequest.self, context: context)
        let email = AccountValidation.normalizeEmail(body.email) ?? body.email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        // Every attempt takes a slot, per email and address and per account,
        // before the slow verification (so parallel guesses cannot all pass
        // the check); a successful one gives them back, so only failures count.
        let slots = try await self.services.reserve(
            [("login:\(email)|\(context.limitAddress)", self.services.limits.loginFailures), ("login:\(email)", self.services.limits.loginFailuresPerAccount)],
            "too many failed logins; try again later"
        )
        // Unknown email or no password: a dummy verification, so status, body and time match a wrong password.
        let user = AccountValidation.normalizeEmail(body.email) == nil ? nil : try await self.services.accounts.user(email: email)
        guard try await self.services.hasher.verify(body.password, against: user?.passwordHash), let user else {
            throw APIError(.unauthorized, "invalid_credentials", "email or password is wrong")
        }
        try await self.services.giveBack(slots)
        return try await self.startSession(for: user, request: request, status: .ok)
    }

    func requestCode(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(CodeRequest.self, context: context)
        guard let email = AccountValidation.normalizeEmail(body.email) else {
            throw APIError.badRequest("invalid_email", "email is not a valid address")
        }
        for (key, rules) in [("otp:ip:\(context.limitAddress)", self.services.limits.codesPerIP), ("otp:email:\(email)", self.services.limits.codesPerEmail)] {
            try await self.services.limit(key, rules, "too many code requests; try again later")
        }
        let code = try await self.services.codes.issue(email: email, logger: context.logger)
        if self.services.environment == .development {
            context.logger.notice("DEVELOPMENT MODE ONLY: one-time code for \(email) is \(code)")
        }
        return try Response.json(EmptyObject(), status: .accepted)
    }

    func verifyCode(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(CodeVerifyRequest.self, context: context)
        guard let email = AccountValidation.normalizeEmail(body.email) else {
            throw APIError.badRequest("invalid_email", "email is not a valid address")
        }
        try await self.services.checkCode(body.code, email: email)
        let (user, takenOver, created) = try await self.services.accounts.upsertVerifiedUser(
            email: email, displayName: AccountValidation.defaultDisplayName(email: email)
        )
        if let takenOver {
            context.logger.notice("an unverified account lost its email to the owner who proved it", metadata: ["user.id": "\(takenOver.userID.lowercased)"])
            await self.services.announce(takenOver, logger: context.logger)
        }
        if created {
            context.logger.info("account registered", metadata: ["user.id": "\(user.id.lowercased)"])
            await self.services.publisher.publish(.userRegistered(userID: user.id), logger: context.logger)
        }
        return try await self.startSession(for: user, request: request, status: .ok)
    }

    func refresh(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(RefreshTokenRequest.self, context: context)
        try await self.limitTokenCalls(context)
        let next = self.services.refreshTokens.successor(of: body.refreshToken)
        switch try await self.services.accounts.refresh(
            presentedHash: Secrets.sha256(body.refreshToken), successorHash: Secrets.sha256(next), retryWindow: self.services.limits.refreshRetryWindow
        ) {
        case .rotated(let sessionID, let user):
            let access = try await self.services.tokens.issue(userID: user.id, sessionID: sessionID)
            return try Response.json(TokensBody(accessToken: access, refreshToken: next, user: UserBody.own(user)))
        case .reused(let sessionID):
            await self.services.revocations.revoke(sessionID, logger: context.logger)
            context.logger.warning("refresh token reused: session revoked", metadata: ["session.id": "\(sessionID.lowercased)"])
            throw APIError(.unauthorized, "token_reused", "this refresh token was already used; the session has been revoked")
        case .invalid:
            throw APIError(.unauthorized, "invalid_token", "the refresh token is invalid or its session has ended")
        }
    }

    func logout(_ request: Request, _ context: ParleyRequestContext) async throws -> Response {
        let body = try await request.decodeJSON(RefreshTokenRequest.self, context: context)
        try await self.limitTokenCalls(context)
        guard let sessionID = try await self.services.accounts.revokeSession(refreshHash: Secrets.sha256(body.refreshToken), reason: "logout") else {
            throw APIError(.unauthorized, "invalid_token", "the refresh token is invalid")
        }
        await self.services.revocations.revoke(sessionID, logger: context.logger)
        return Response.noContent()
    }

    private func limitTokenCalls(_ context: ParleyRequestContext) async throws {
        try await self.services.limit("token:\(context.limitAddress)", self.services.limits.tokenCallsPerAddress, "too many token requests from this address; try again later")
    }

    private func startSession(for user: UserRecord, request: Request, status: HTTPResponse.Status) async throws -> Response {
        let refresh = self.services.refreshTokens.first()
        let sessionID = try await self.services.accounts.createSession(
            userID: user.id, refreshHash: Secrets.sha256(refresh), lifetime: self.services.limits.sessionLifetime,
            userAgent: request.headers[.userAgent]
        )
        let access = try await self.services.tokens.issue(userID: user.id, sessionID: sessionID)
        return try Response.json(TokensBody(accessToken: access, refreshToken: refresh, user: UserBody.own(user)), status: status)
    }
}
