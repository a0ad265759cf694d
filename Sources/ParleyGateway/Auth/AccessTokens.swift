public import Foundation
import JWTKit
import ParleyCore

/// The claims of an access token.
struct AccessTokenPayload: JWTPayload {
    static let audience = "parley"
    static let type = "access"

    var sub: SubjectClaim
    var sid: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim
    var aud: AudienceClaim
    /// Always "access": nothing else this service signs may stand in for an access token.
    var typ: String

    func verify(using algorithm: some JWTAlgorithm) async throws {
        // ≤ 60 s leeway for clock skew between instances and clients.
        try self.exp.verifyNotExpired(currentDate: Date().addingTimeInterval(-AccessTokens.leeway))
        try self.aud.verifyIntendedAudience(includes: Self.audience)
        guard self.typ == Self.type else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "not an access token") }
    }
}

/// Who an authenticated request comes from.
public struct Identity: Sendable, Hashable {
    public var userID: UUID
    public var sessionID: UUID
    public var expiresAt: Date
}

/// Signs and verifies access tokens: HS256 only, the algorithm in the header
/// is checked before anything else (no `none`, no other HMAC or key type).
public struct AccessTokens: Sendable {
    public static let lifetime: TimeInterval = 900
    static let leeway: TimeInterval = 60

    private let keys: JWTKeyCollection

    /// The encoded headers of the tokens this service signs (JWTKit writes
    /// the two fields in either order: a dictionary): a token that carries
    /// exactly one of these needs no JSON parse to pass the header check.
    /// Each passes the full check, so the shortcut accepts nothing it would refuse.
    static let ownHeaders: Set<Substring> = Set(
        [#"{"alg":"HS256","typ":"JWT"}"#, #"{"typ":"JWT","alg":"HS256"}"#].map { Substring(Secrets.base64URL(Data($0.utf8))) }
            .filter { Self.headerIsHS256(String($0) + ".e30.", parsing: true) }
    )

    public init(secret: [UInt8]) async {
        self.keys = JWTKeyCollection()
        await self.keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    public func issue(userID: UUID, sessionID: UUID, now: Date = Date(), lifetime: TimeInterval = AccessTokens.lifetime) async throws -> String {
        try await self.keys.sign(Self.payload(userID: userID, sessionID: sessionID, now: now, lifetime: lifetime))
    }

    private static func payload(userID: UUID, sessionID: UUID, now: Date, lifetime: TimeInterval) -> AccessTokenPayload {
        AccessTokenPayload(
            sub: .init(value: userID.lowercased),
            sid: sessionID.lowercased,
            exp: .init(value: now.addingTimeInterval(lifetime)),
            iat: .init(value: now),
            aud: .init(value: [AccessTokenPayload.audience]),
            typ: AccessTokenPayload.type
        )
    }

    /// The identity of a valid token, or nil for anything else.
    public func verify(_ token: String) async -> Identity? {
        guard Self.headerIsHS256(token), let payload = try? await self.keys.verify(token, as: AccessTokenPayload.self),
            let userID = UUID(uuidString: payload.sub.value), let sessionID = UUID(uuidString: payload.sid)
        else { return nil }
        return Identity(userID: userID, sessionID: sessionID, expiresAt: payload.exp.value)
    }

    /// Whether the header names HS256 and nothing critical; `parsing`: always
    /// parse it, even when it is one of ours.
    static func headerIsHS256(_ token: String, parsing: Bool = false) -> Bool {
        // three parts: exactly two dots (read as bytes: no Character iteration)
        let dot = UInt8(ascii: ".")
        guard token.utf8.lazy.filter({ $0 == dot }).count == 2, let end = token.utf8.firstIndex(of: dot) else { return false }
        let header = token[..<end]
        if !parsing, Self.ownHeaders.contains(header) { return true }
        guard let data = Secrets.base64URLDecode(header),
            let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return false }
        return header["alg"] as? String == "HS256" && header["crit"] == nil
    }
}
