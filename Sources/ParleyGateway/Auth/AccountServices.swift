import HiredisNIO
import Logging
public import ParleyCore

/// Limits of PROTOCOL.md ("Limits"), as defaults.
public struct AccountLimits: Sendable {
    public var codesPerEmail = [RateLimitRule(1, per: .seconds(60)), RateLimitRule(5, per: .seconds(3600))]
    public var codesPerIP = [RateLimitRule(20, per: .seconds(3600))]
    /// Failed logins per email and IP.
    public var loginFailures = [RateLimitRule(10, per: .seconds(900))]
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

    public init(
        environment: DeploymentEnvironment, accounts: AccountStore, hasher: PasswordHasher, tokens: AccessTokens, codes: OneTimeCodes,
        limiter: RateLimiter, revocations: SessionRevocations, limits: AccountLimits
    ) {
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
