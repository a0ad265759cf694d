import CSodium
import Synchronization
public import NIOPosix

/// Argon2id password hashes (libsodium `crypto_pwhash_str`, PHC string format),
/// computed on a thread pool, never on an event loop.
///
/// The cost is at least OWASP's minimum for Argon2id: 19 MiB, t=2, p=1
/// (libsodium always uses one lane). At most the pool's threads hash at
/// once, which bounds the memory they take, and at most `maxPending` wait
/// or run: past that, `hash` and `verify` throw `PasswordHasher.Busy` at
/// once (the gateway answers 503 with Retry-After), so a flood of logins
/// cannot build a queue that makes every real login wait for seconds.
public struct PasswordHasher: Sendable {
    public struct Cost: Sendable, Hashable {
        public var iterations: Int
        public var memoryBytes: Int
        public static let owaspMinimum = Cost(iterations: 2, memoryBytes: 19 * 1024 * 1024)
    }

    /// Password length in characters (grapheme clusters), never truncated.
    public static let lengthRange = 8...256

    private static let initialized: Bool = sodium_init() >= 0

    public let cost: Cost
    private let pool: NIOThreadPool
    /// A hash of a random password: verified against when the account does not
    /// exist, so that an unknown email costs the same time as a wrong password.
    /// Made on first use, on the thread pool.
    private let dummy = DummyHash()
    private let counter = VerificationCounter()
    private let pending = VerificationCounter()
    /// Hashes and verifications admitted at once (running or queued).
    public let maxPending: Int

    /// Too many hashes are waiting; try again shortly.
    public struct Busy: Error {
        public init() {}
    }

    /// Argon2id verifications run so far (dummy ones included).
    public var verifications: Int { self.counter.value.load(ordering: .relaxed) }

    public init(cost: Cost = .owaspMinimum, pool: NIOThreadPool = .singleton, maxPending: Int = 32) {
        precondition(Self.initialized, "libsodium failed to initialise")
        precondition(maxPending > 0)
        self.cost = cost
        self.pool = pool
        self.maxPending = maxPending
    }

    /// Runs `work` on the pool if fewer than `maxPending` are admitted.
    private func admitted<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        let before = self.pending.value.wrappingAdd(1, ordering: .relaxed).oldValue
        defer { self.pending.value.subtract(1, ordering: .relaxed) }
        guard before < self.maxPending else { throw Busy() }
        return try await self.pool.runIfActive(work)
    }

    public func hash(_ password: String) async throws -> String {
        let cost = self.cost
        guard let hash = try await self.admitted({ Self.hashNow(password, cost: cost) }) else {
            throw PasswordHashingFailed()
        }
        return hash
    }

    /// Verifies `password` against `hash`; with a nil hash (no such account, or
    /// an account without a password) it runs a dummy verification and returns false.
    public func verify(_ password: String, against hash: String?) async throws -> Bool {
        let cost = self.cost
        let dummy = self.dummy
        let matches = try await self.admitted { Self.verifyNow(password, hash: hash ?? dummy.hash(cost: cost)) }
        self.counter.value.add(1, ordering: .relaxed)
        return matches && hash != nil
    }

    static func hashNow(_ password: String, cost: Cost) -> String? {
        var output = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
        // A trailing NUL keeps the buffer non-empty; the length excludes it, so
        // passwords may contain any byte (NUL included) and are never truncated.
        let bytes = Array(password.utf8) + [0]
        let rc = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                crypto_pwhash_str_alg(
                    &output, chars.baseAddress!, UInt64(chars.count - 1), UInt64(cost.iterations), cost.memoryBytes,
                    crypto_pwhash_ALG_ARGON2ID13
                )
            }
        }
        guard rc == 0 else { return nil }
        return String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func verifyNow(_ password: String, hash: String) -> Bool {
        let bytes = Array(password.utf8) + [0]
        return hash.withCString { hashPointer in
            bytes.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { chars in
                    crypto_pwhash_str_verify(hashPointer, chars.baseAddress!, UInt64(chars.count - 1)) == 0
                }
            }
        }
    }
}

public struct PasswordHashingFailed: Error {}

private final class DummyHash: Sendable {
    private let value = Mutex<String?>(nil)

    /// Called on the thread pool only.
    func hash(cost: PasswordHasher.Cost) -> String {
        if let existing = self.value.withLock({ $0 }) { return existing }
        let random = String((0..<32).map { _ in Character(UnicodeScalar(UInt8.random(in: 97...122))) })
        let made = PasswordHasher.hashNow(random, cost: cost) ?? ""
        self.value.withLock { if $0 == nil { $0 = made } }
        return made
    }
}

private final class VerificationCounter: Sendable {
    let value = Atomic<Int>(0)
}
