import Foundation
import HTTPTypes
import HiredisNIO
import Logging
public import ParleyCore
public import ParleyChat

/// Limits of PROTOCOL.md ("Limits"), as defaults.
public struct AccountLimits: Sendable {
    public var codesPerEmail = [RateLimitRule(1, per: .seconds(60)), RateLimitRule(5, per: .seconds(3600))]
    public var codesPerIP = [RateLimitRule(20, per: .seconds(3600))]
    /// Failed logins per email and address (an IPv6 address counts by its /64).
    public var loginFailures = [RateLimitRule(10, per: .seconds(900))]
    /// Failed logins per account, from all addresses together (a distributed guesser).
    public var loginFailuresPerAccount = [RateLimitRule(30, per: .seconds(3600))]
    /// Wrong one-time codes per email, whatever the number of codes requested.
    public var wrongCodesPerEmail = [RateLimitRule(10, per: .seconds(3600))]
    /// Account registrations per address.
    public var registrationsPerAddress = [RateLimitRule(10, per: .seconds(3600))]
    /// Refreshes and logouts per address (each looks a token up in PostgreSQL).
    public var tokenCallsPerAddress = [RateLimitRule(300, per: .seconds(60))]
    /// Profile changes and ended sessions per user (PATCH /v1/me, DELETE /v1/me/sessions/{id}).
    public var profileChangesPerUser = [RateLimitRule(60, per: .seconds(60))]
    /// A refresh token presented again this soon after its rotation (a client
    /// retrying after a lost answer) gets the same successor instead of
    /// revoking the session.
    public var refreshRetryWindow: Duration = .seconds(10)
    /// Absolute: refreshing never extends a session.
    public var sessionLifetime: Duration = .seconds(30 * 24 * 3600)

    public init() {}
}

/// Everything the account routes use.
public struct AccountServices: Sendable {
    public let environment: DeploymentEnvironment
    public let accounts: AccountStore
    public let hasher: PasswordHasher
    public let tokens: AccessTokens
    public let codes: OneTimeCodes
    public let limiter: RateLimiter
    public let revocations: SessionRevocations
    public let limits: AccountLimits
    public let passwordStrength: PasswordStrength
    public let refreshTokens: RefreshTokens
    /// Announces what a deleted account left.
    public let publisher: ChatEventPublisher
    /// Web Push subscriptions, and the settings they are checked against.
    public var push: PushStore
    public var pushSettings = PushSettings()

    public init(
        environment: DeploymentEnvironment, accounts: AccountStore, hasher: PasswordHasher, tokens: AccessTokens, codes: OneTimeCodes,
        limiter: RateLimiter, revocations: SessionRevocations, limits: AccountLimits, passwordStrength: PasswordStrength,
        refreshTokens: RefreshTokens, publisher: ChatEventPublisher, push: PushStore
    ) {
        self.push = push
        self.passwordStrength = passwordStrength
        self.refreshTokens = refreshTokens
        self.publisher = publisher
        self.environment = environment
        self.accounts = accounts
        self.hasher = hasher
        self.tokens = tokens
        self.codes = codes
        self.limiter = limiter
        self.revocations = revocations
        self.limits = limits
    }
}

extension AccountServices {
    /// Tells everyone what a deletion changed: the account's sockets close
    /// (4001) on every instance, its groups see it leave.
    func announce(_ deletion: AccountStore.AccountDeletion, logger: Logger) async {
        for sessionID in deletion.revokedSessions { await self.revocations.revoke(sessionID, logger: logger) }
        var events: [ChatEvent] = []
        for (chatID, newOwner) in deletion.leftGroups {
            events.append(.memberRemoved(chatID: chatID, userID: deletion.userID))
            if newOwner != nil { events.append(.chatUpdated(chatID: chatID)) }
        }
        if !events.isEmpty { await self.publisher.publish(events, logger: logger) }
    }

    func limit(_ key: String, _ rules: [RateLimitRule], _ detail: String) async throws {
        try await self.limiter.enforce(key, rules, detail)
    }

    /// Changes to an account (profile, blocks, sessions, push subscriptions) share one budget per user.
    func limitProfileChanges(_ userID: UUID) async throws {
        try await self.limit("profile:\(userID.lowercased)", self.limits.profileChangesPerUser, "too many changes to your account; try again later")
    }

    /// Takes a slot under each key (429 if any is full, giving back those taken).
    func reserve(_ limits: [(key: String, rules: [RateLimitRule])], _ detail: String) async throws -> [(key: String, token: String)] {
        var taken: [(key: String, token: String)] = []
        for (key, rules) in limits {
            let token = UUID().uuidString
            if case .limited(let retryAfter) = try await self.limiter.reserve(key, rules, token: token) {
                try await self.giveBack(taken)
                throw APIError.rateLimited(detail, retryAfter: retryAfter)
            }
            taken.append((key, token))
        }
        return taken
    }

    func giveBack(_ slots: [(key: String, token: String)]) async throws {
        for (key, token) in slots { try await self.limiter.giveBack(key, token: token) }
    }

    /// Checks (and uses up) a one-time code sent to `email`. Wrong codes count
    /// per email, however many codes were requested: each attempt takes a
    /// slot first, the right code gives it back.
    func checkCode(_ code: String, email: String) async throws {
        let slots = try await self.reserve([("otp:wrong:\(email)", self.limits.wrongCodesPerEmail)], "too many wrong codes; try again later")
        guard try await self.codes.verify(email: email, code: code.trimmingCharacters(in: .whitespaces)) == .valid else {
            throw APIError(.unauthorized, "invalid_code", "the code is wrong, expired or used up (request one with POST /v1/auth/otp/request)")
        }
        try await self.giveBack(slots)
    }
}
