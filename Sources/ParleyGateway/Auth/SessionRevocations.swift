public import Foundation
public import HiredisNIO
public import Logging
public import ParleyCore
public import ServiceLifecycle
import Synchronization

/// Revoked sessions, as every gateway instance sees them.
///
/// PostgreSQL is the truth (`sessions.revoked_at`). Each process keeps in
/// memory the sessions revoked within the lifetime of an access token: it
/// loads them at start, hears new ones at once on the Redis channel
/// `sessions:revoked` (the realtime dispatcher hands them to `learn`), and
/// polls PostgreSQL every `pollInterval` for any it could have missed — so
/// a Redis restart that lost everything, or a publish that failed, never
/// lets a revoked session work again for longer than one poll. A check is a
/// lookup in memory while the last poll is recent (`maxStaleness`); when it
/// is not (PostgreSQL unreachable), the check asks PostgreSQL itself and
/// fails closed.
public final class SessionRevocations: Service {
    public static let channel = "sessions:revoked"
    /// How long after its revocation a session still matters: the longest an
    /// access token issued before it could live.
    static let memory = AccessTokens.lifetime + AccessTokens.leeway

    let redis: RedisClient
    let accounts: AccountStore
    let logger: Logger
    let pollInterval: Duration
    let maxStaleness: Duration

    private struct State {
        /// Session → when it was revoked (local clock, for pruning).
        var revoked: [UUID: Date] = [:]
        var syncedAt: ContinuousClock.Instant?
        var everSynced = false
        var failing = false
    }

    private let state = Mutex(State())
    /// Called with each session newly known to be revoked (the realtime
    /// service closes its sockets with 4001).
    private let handlers = Mutex<[Handler]>([])
    private final class Handler: Sendable {
        let call: @Sendable ([UUID]) -> Void
        init(_ call: @escaping @Sendable ([UUID]) -> Void) { self.call = call }
    }

    public init(redis: RedisClient, accounts: AccountStore, logger: Logger, pollInterval: Duration = .seconds(2), maxStaleness: Duration = .seconds(5)) {
        self.redis = redis
        self.accounts = accounts
        self.logger = logger
        self.pollInterval = pollInterval
        self.maxStaleness = maxStaleness
    }

    func onRevoked(_ handler: @escaping @Sendable ([UUID]) -> Void) {
        self.handlers.withLock { $0.append(Handler(handler)) }
    }

    /// Announces a revocation already stored in PostgreSQL: known here at
    /// once, on every other instance through Redis (or their next poll).
    public func revoke(_ sessionID: UUID, logger: Logger) async {
        self.learn([sessionID])
        do {
            _ = try await self.redis.publish(Self.channel, .string(sessionID.lowercased))
        } catch {
            logger.warning(
                "could not announce a session revocation in Redis; other instances see it at their next PostgreSQL poll",
                metadata: ["session.id": "\(sessionID.lowercased)", "error": "\(error)"]
            )
        }
    }

    /// Records revoked sessions; calls the handlers with those that are new.
    func learn(_ sessionIDs: [UUID]) {
        let now = Date()
        let new = self.state.withLock { state in
            sessionIDs.filter { state.revoked.updateValue(state.revoked[$0] ?? now, forKey: $0) == nil }
        }
        guard !new.isEmpty else { return }
        for handler in self.handlers.withLock({ $0 }) { handler.call(new) }
    }

    /// Whether the in-memory view is recent enough to answer alone.
    public var isFresh: Bool {
        self.state.withLock { state in
            guard let syncedAt = state.syncedAt else { return false }
            return ContinuousClock.now - syncedAt <= self.maxStaleness
        }
    }

    /// Whether a session is revoked (or gone). Throws only when the view is
    /// stale and PostgreSQL cannot answer either.
    public func isRevoked(_ sessionID: UUID) async throws -> Bool {
        let (known, fresh) = self.state.withLock { state -> (Bool, Bool) in
            let fresh = state.syncedAt.map { ContinuousClock.now - $0 <= self.maxStaleness } ?? false
            return (state.revoked[sessionID] != nil, fresh)
        }
        if known { return true }
        if fresh { return false }
        let revoked = try await self.accounts.isSessionRevoked(sessionID)
        if revoked { self.learn([sessionID]) }
        return revoked
    }

    /// Loads the recent revocations, then polls until shutdown.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.poll()
                try? await Task.sleep(for: self.pollInterval)
            }
        }
    }

    /// One poll: everything revoked recently enough to matter the first
    /// time, then the last two minutes (revocations commit within seconds of
    /// their timestamp; the overlap makes a late commit harmless).
    func poll() async {
        let everSynced = self.state.withLock { $0.everSynced }
        let lookback: Duration = everSynced ? .seconds(120) : .seconds(Int64(Self.memory))
        let started = ContinuousClock.now
        do {
            let revoked = try await self.accounts.revokedSessions(within: lookback)
            self.learn(revoked)
            let horizon = Date().addingTimeInterval(-Self.memory)
            let recovered = self.state.withLock { state in
                state.revoked = state.revoked.filter { $0.value > horizon }
                state.syncedAt = started
                state.everSynced = true
                defer { state.failing = false }
                return state.failing
            }
            if recovered { self.logger.info("session revocations are polled again") }
        } catch {
            let first = self.state.withLock { state in
                defer { state.failing = true }
                return !state.failing
            }
            if first {
                self.logger.warning(
                    "cannot poll session revocations; once the last poll is \(self.maxStaleness) old, checks ask PostgreSQL",
                    metadata: ["error": "\(error)"]
                )
            }
        }
    }
}
