public import Crypto
public import Foundation

/// Random tokens, digests and keys derived from the one configured secret.
public enum Secrets {
    /// `count` bytes from the system CSPRNG, base64url without padding.
    public static func randomToken(bytes count: Int = 32) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return base64URL(Data(bytes))
    }

    public static func sha256(_ text: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(text.utf8)))
    }

    /// HKDF-SHA256 of the master secret for one purpose ("parley/otp/v1", …):
    /// one configured secret, independent keys per use.
    public static func deriveKey(from secret: [UInt8], purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: secret), info: Data(purpose.utf8), outputByteCount: 32)
    }

    public static func hmacHex(_ message: String, key: SymmetricKey) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: key).map { String(format: "%02x", $0) }.joined()
    }

    /// Compares without an early exit, so the time taken does not depend on where the inputs differ.
    public static func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    public static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func base64URLDecode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    /// Seals `plaintext` with ChaCha20-Poly1305 (random nonce); base64 of nonce‖ciphertext‖tag.
    public static func seal(_ plaintext: String, key: SymmetricKey) throws -> String {
        try ChaChaPoly.seal(Data(plaintext.utf8), using: key).combined.base64EncodedString()
    }

    public static func open(_ sealed: String, key: SymmetricKey) throws -> String {
        guard let data = Data(base64Encoded: sealed) else { throw CryptoKitError.incorrectParameterSize }
        return String(decoding: try ChaChaPoly.open(ChaChaPoly.SealedBox(combined: data), using: key), as: UTF8.self)
    }
}

extension UUID {
    /// A version 7 UUID: 48-bit Unix milliseconds, then random bits. Time-ordered,
    /// so new rows land at the end of b-tree indexes.
    public static func v7(at date: Date = Date()) -> UUID {
        var generator = SystemRandomNumberGenerator()
        let ms = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> (8 * (5 - UInt64(i)))) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// Lowercase, as the protocol writes ids.
    public var lowercased: String { self.uuidString.lowercased() }
}

/// Refresh tokens: 256 random bits, stored only as SHA-256. A session's
/// next token is derived from the one presented (HMAC with a key derived
/// from the server secret), so a client that retries a refresh whose answer
/// it lost is given the same successor again.
public struct RefreshTokens: Sendable {
    let key: SymmetricKey

    public init(secret: [UInt8]) {
        self.key = Secrets.deriveKey(from: secret, purpose: "parley/refresh-successor/v1")
    }

    /// A session's first token.
    public func first() -> String { Secrets.randomToken() }

    /// The token that replaces `token` when it is spent.
    public func successor(of token: String) -> String {
        Secrets.base64URL(Data(HMAC<SHA256>.authenticationCode(for: Data(token.utf8), using: self.key)))
    }
}
