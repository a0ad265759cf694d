public import Crypto
import Foundation
public import HiredisNIO
public import Logging

/// Email one-time codes: 6 digits from the system CSPRNG, kept in Redis only
/// as an HMAC (keyed with a secret derived from the JWT secret) for `lifetime`;
/// single use; dead after `maxAttempts` verifications that were not the right code.
public struct OneTimeCodes: Sendable {
    public static let mailStream = "mail:jobs"

    let redis: RedisClient
    let hmacKey: SymmetricKey
    let mailKey: SymmetricKey
    public let lifetime: Duration
    public let maxAttempts: Int

    public init(redis: RedisClient, secret: [UInt8], lifetime: Duration = .seconds(300), maxAttempts: Int = 5) {
        self.redis = redis
        self.hmacKey = Secrets.deriveKey(from: secret, purpose: "parley/otp-hmac/v1")
        self.mailKey = Self.mailJobKey(secret: secret)
        self.lifetime = lifetime
        self.maxAttempts = maxAttempts
    }

    /// The key that seals codes inside mail jobs; the mail worker is given
    /// it (`parley mail-key` prints it), never the secret it comes from.
    public static func mailJobKey(secret: [UInt8]) -> SymmetricKey {
        Secrets.deriveKey(from: secret, purpose: "parley/mail-job/v1")
    }

    /// `mailJobKey` as PARLEY_MAIL_KEY carries it (base64url).
    public static func mailJobKeyText(secret: [UInt8]) -> String {
        Self.mailJobKey(secret: secret).withUnsafeBytes { Secrets.base64URL(Data($0)) }
    }

    static func key(_ email: String) -> String { "otp:{\(email)}" }

    public static func generateCode() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = UInt32.random(in: 0..<1_000_000, using: &generator)
        let digits = String(value)
        return String(repeating: "0", count: 6 - digits.count) + digits
    }

    public static func isWellFormed(_ code: String) -> Bool {
        code.utf8.count == 6 && code.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    func digest(email: String, code: String) -> String {
        Secrets.hmacHex("\(email):\(code)", key: self.hmacKey)
    }

    /// Stores a new code for `email` (replacing any previous one) and enqueues
    /// the mail job with the code sealed. Returns the code.
    @discardableResult
    public func issue(email: String, logger: Logger) async throws -> String {
        let code = Self.generateCode()
        let seconds = Int(self.lifetime.components.seconds)
        let key = Self.key(email)
        let expiresAt = Int64((Date().timeIntervalSince1970 + Double(seconds)) * 1000)
        let replies = try await self.redis.pipeline([
            RedisCommand("DEL", [.string(key)]),
            RedisCommand("HSET", [.string(key), "h", .string(self.digest(email: email, code: code)), "attempts", "0"]),
            RedisCommand("EXPIRE", [.string(key), RedisArgument(seconds)]),
            RedisCommand("XADD", [
                .string(Self.mailStream), "MAXLEN", "~", "100000", "*",
                "kind", "otp", "id", .string(UUID.v7().lowercased), "to", .string(email),
                "code_box", .string(try Secrets.seal(code, key: self.mailKey)), "expires_at", RedisArgument(expiresAt),
            ]),
        ])
        if let failure = replies.first(where: { if case .error = $0 { return true } else { return false } }), case .error(let message) = failure {
            throw RedisError(.serverError, message)
        }
        return code
    }

    public enum Verification: Sendable, Hashable {
        case valid
        case invalid
    }

    /// Checks a code. Every call counts as an attempt; once `maxAttempts` is
    /// passed the code is deleted, so even the right code fails afterwards.
    /// The comparison runs in constant time here, and the code is then
    /// consumed atomically: of two parallel verifications, one wins.
    public func verify(email: String, code: String) async throws -> Verification {
        guard Self.isWellFormed(code) else { return .invalid }
        let key = Self.key(email)
        let stored = try await self.redis.evalsha(Self.attemptScript, keys: [key], arguments: [RedisArgument(self.maxAttempts)])
        guard let storedDigest = stored.string else { return .invalid }
        let presented = self.digest(email: email, code: code)
        guard Secrets.constantTimeEquals(Array(storedDigest.utf8), Array(presented.utf8)) else { return .invalid }
        let consumed = try await self.redis.evalsha(Self.consumeScript, keys: [key], arguments: [.string(storedDigest)])
        return consumed.int == 1 ? .valid : .invalid
    }

    /// Counts an attempt and returns the stored digest, or nil when there is
    /// no code or the attempts are used up (then the code is deleted).
    static let attemptScript = RedisScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return false end
        local n = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
        if n > tonumber(ARGV[1]) then
          redis.call('DEL', KEYS[1])
          return false
        end
        return redis.call('HGET', KEYS[1], 'h')
        """
    )

    /// Deletes the code if it is still the one that was checked; 1 if this call consumed it.
    static let consumeScript = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'h') == ARGV[1] then
          redis.call('DEL', KEYS[1])
          return 1
        end
        return 0
        """
    )
}
