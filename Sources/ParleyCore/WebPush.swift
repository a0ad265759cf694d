public import Crypto
public import Foundation

/// Web Push: the server's VAPID key (RFC 8292) and message encryption
/// (RFC 8291, `aes128gcm` of RFC 8188). Everything cryptographic is
/// swift-crypto's (P-256 ECDH and ECDSA, HKDF-SHA256, AES-128-GCM); this
/// is only the RFCs' framing.
public enum WebPush {
    /// The key a push subscription gives (`keys.p256dh` and `keys.auth`):
    /// the user agent's P-256 public key and its 16-byte auth secret.
    public struct SubscriptionKeys: Sendable, Equatable {
        public let p256dh: Data
        public let auth: Data

        /// Checks both keys: `p256dh` base64url of an uncompressed point on
        /// P-256 (65 bytes), `auth` base64url of 16 bytes.
        public init?(p256dh: String, auth: String) {
            guard let point = Secrets.base64URLDecode(p256dh), point.count == 65, point.first == 0x04,
                (try? P256.KeyAgreement.PublicKey(x963Representation: point)) != nil,
                let secret = Secrets.base64URLDecode(auth), secret.count == 16
            else { return nil }
            self.p256dh = point
            self.auth = secret
        }
    }

    /// The record size written into the header: one record holds any
    /// payload a push service accepts (4,096 bytes in all).
    static let recordSize: UInt32 = 4096
    /// The largest payload: a body of 3,000 bytes, which every push service
    /// accepts (Firefox for Android about 3,015), less the header (86) and
    /// the tag and the delimiter (17).
    public static let maxPayload = 3000 - 86 - 17

    /// The body of a push (RFC 8291 §4): the header (salt, record size,
    /// the sender's ephemeral public key) and `payload` sealed in one
    /// record. `salt` and `ephemeral` are random unless given (tests).
    public static func encrypt(
        _ payload: Data, for keys: SubscriptionKeys, salt: Data? = nil, ephemeral: P256.KeyAgreement.PrivateKey? = nil
    ) throws -> Data {
        guard payload.count <= Self.maxPayload else { throw CryptoKitError.incorrectParameterSize }
        let senderKey = ephemeral ?? P256.KeyAgreement.PrivateKey()
        let senderPublic = senderKey.publicKey.x963Representation
        let salt = salt ?? Data((0..<16).map { _ in UInt8.random(in: .min ... .max) })
        let shared = try senderKey.sharedSecretFromKeyAgreement(with: P256.KeyAgreement.PublicKey(x963Representation: keys.p256dh))
        // IKM = HKDF(auth, ecdh, "WebPush: info" 0 ua_public as_public, 32)
        let keyInfo = Data("WebPush: info".utf8) + [0] + keys.p256dh + senderPublic
        let ikm = shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: keys.auth, sharedInfo: keyInfo, outputByteCount: 32)
        let contentKey = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, salt: salt, info: Data("Content-Encoding: aes128gcm".utf8) + [0], outputByteCount: 16)
        let nonce = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, salt: salt, info: Data("Content-Encoding: nonce".utf8) + [0], outputByteCount: 12)
        // one record, the last: payload then the delimiter 2 (no padding)
        let sealed = try AES.GCM.seal(
            payload + [2], using: contentKey, nonce: AES.GCM.Nonce(data: nonce.withUnsafeBytes { Data($0) })
        )
        var body = salt
        withUnsafeBytes(of: Self.recordSize.bigEndian) { body.append(contentsOf: $0) }
        body.append(UInt8(senderPublic.count))
        body.append(senderPublic)
        body.append(sealed.ciphertext)
        body.append(sealed.tag)
        return body
    }

    /// The server's application server key (RFC 8292): an ES256 key pair
    /// from the base64url 32-byte private scalar of PARLEY_VAPID_PRIVATE_KEY.
    public struct VAPIDKey: Sendable {
        public let privateKey: P256.Signing.PrivateKey
        /// `mailto:` or `https:` contact for push services.
        public let subject: String

        public init(privateKey: P256.Signing.PrivateKey, subject: String) {
            self.privateKey = privateKey
            self.subject = subject
        }

        /// Nil unless `base64URL` is 32 bytes that make a P-256 private key.
        public init?(base64URL: String, subject: String) {
            guard let raw = Secrets.base64URLDecode(base64URL), raw.count == 32,
                let key = try? P256.Signing.PrivateKey(rawRepresentation: raw)
            else { return nil }
            self.init(privateKey: key, subject: subject)
        }

        /// A new key, as `parley vapid-key` prints it.
        public static func generate() -> (privateKey: String, publicKey: String) {
            let key = P256.Signing.PrivateKey()
            return (Secrets.base64URL(key.rawRepresentation), Secrets.base64URL(key.publicKey.x963Representation))
        }

        /// The uncompressed public point, base64url (`applicationServerKey` in browsers, `k=` in the header).
        public var publicKey: String { Secrets.base64URL(self.privateKey.publicKey.x963Representation) }

        /// `vapid t=<JWT>, k=<public key>` for a push to `endpoint`: the JWT's
        /// `aud` is the endpoint's origin, `exp` `lifetime` from `now` (at most 24 h).
        public func authorization(for endpoint: URL, now: Date = Date(), lifetime: TimeInterval = 12 * 3600) throws -> String {
            guard let audience = Self.origin(of: endpoint) else { throw CryptoKitError.incorrectParameterSize }
            let header = Secrets.base64URL(Data(#"{"typ":"JWT","alg":"ES256"}"#.utf8))
            let claims = try JSONSerialization.data(
                withJSONObject: ["aud": audience, "exp": Int(now.timeIntervalSince1970 + min(lifetime, 24 * 3600)), "sub": self.subject],
                options: [.sortedKeys, .withoutEscapingSlashes]
            )
            let input = header + "." + Secrets.base64URL(claims)
            let signature = try self.privateKey.signature(for: Data(input.utf8)).rawRepresentation
            return "vapid t=\(input).\(Secrets.base64URL(signature)), k=\(self.publicKey)"
        }

        /// scheme://host[:port], the port only when it is not the scheme's default.
        public static func origin(of url: URL) -> String? {
            guard let components = URLComponents(url: url, resolvingAgainstBaseURL: false), let scheme = components.scheme?.lowercased(),
                let host = components.host?.lowercased(), !host.isEmpty
            else { return nil }
            let defaultPort = scheme == "https" ? 443 : 80
            if let port = components.port, port != defaultPort { return "\(scheme)://\(host):\(port)" }
            return "\(scheme)://\(host)"
        }
    }

    /// The `Topic` header that collapses the pushes of one chat (RFC 8030
    /// §5.4: at most 32 characters of the base64url alphabet): the chat id
    /// as 32 hex digits.
    public static func topic(chatID: UUID) -> String {
        chatID.uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    }
}
