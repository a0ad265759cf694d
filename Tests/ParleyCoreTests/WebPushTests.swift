import Crypto
import Foundation
import ParleyCore
import Testing

/// Web Push message encryption (RFC 8291) and VAPID (RFC 8292), pure.
@Suite struct WebPushTests {
    // RFC 8291 Appendix A
    static let plaintext = "When I grow up, I want to be a watermelon"
    static let senderPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
    static let receiverPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
    static let receiverPublic = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
    static let auth = "BTBZMqHH6r4Tts7J_aSIgg"
    static let salt = "DGv6ra1nlYgDCS1FRnbzlw"
    static let expected =
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

    @Test func encryptsTheExampleOfRFC8291() throws {
        let keys = try #require(WebPush.SubscriptionKeys(p256dh: Self.receiverPublic, auth: Self.auth))
        let sender = try P256.KeyAgreement.PrivateKey(rawRepresentation: try #require(Secrets.base64URLDecode(Self.senderPrivate)))
        let body = try WebPush.encrypt(Data(Self.plaintext.utf8), for: keys, salt: Secrets.base64URLDecode(Self.salt), ephemeral: sender)
        #expect(Secrets.base64URL(body) == Self.expected)
    }

    @Test func aRandomKeyAndSaltStillDecryptForTheReceiver() throws {
        let receiver = P256.KeyAgreement.PrivateKey()
        let auth = Data((0..<16).map { _ in UInt8.random(in: 0...255) })
        let keys = try #require(WebPush.SubscriptionKeys(p256dh: Secrets.base64URL(receiver.publicKey.x963Representation), auth: Secrets.base64URL(auth)))
        let payload = Data(#"{"type":"message","preview":"héllo 👋"}"#.utf8)
        let first = try WebPush.encrypt(payload, for: keys), second = try WebPush.encrypt(payload, for: keys)
        #expect(first != second, "a new salt and key per push")
        #expect(try Self.decrypt(first, receiver: receiver, auth: auth) == payload)
        #expect(first.count == 86 + payload.count + 1 + 16)
    }

    @Test func refusesPayloadsNoPushServiceTakes() throws {
        let keys = try #require(WebPush.SubscriptionKeys(p256dh: Self.receiverPublic, auth: Self.auth))
        #expect(throws: (any Error).self) { try WebPush.encrypt(Data(count: WebPush.maxPayload + 1), for: keys) }
        #expect(try WebPush.encrypt(Data(count: WebPush.maxPayload), for: keys).count == 3000)
    }

    @Test func subscriptionKeysMustBeAPointAndSixteenBytes() {
        #expect(WebPush.SubscriptionKeys(p256dh: Self.receiverPublic, auth: Self.auth) != nil)
        #expect(WebPush.SubscriptionKeys(p256dh: Self.receiverPublic, auth: "AAAA") == nil, "3 bytes of auth")
        #expect(WebPush.SubscriptionKeys(p256dh: String(Self.receiverPublic.dropLast(4)), auth: Self.auth) == nil, "short point")
        var notOnCurve = Array(Secrets.base64URLDecode(Self.receiverPublic)!)
        notOnCurve[64] ^= 1
        #expect(WebPush.SubscriptionKeys(p256dh: Secrets.base64URL(Data(notOnCurve)), auth: Self.auth) == nil, "not on the curve")
        #expect(WebPush.SubscriptionKeys(p256dh: "not base64 !", auth: Self.auth) == nil)
    }

    @Test func vapidSignsAJWTForTheEndpointsOrigin() throws {
        let key = try #require(WebPush.VAPIDKey(base64URL: Self.senderPrivate, subject: "mailto:ops@example.com"))
        #expect(key.publicKey == "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let header = try key.authorization(for: URL(string: "https://push.example.net:8443/wpush/v2/abc?x=1")!, now: now)
        let parts = header.split(separator: " ")
        #expect(parts.first == "vapid")
        #expect(header.hasSuffix(", k=\(key.publicKey)"))
        let token = String(parts[1].dropFirst(2).dropLast())
        let pieces = token.split(separator: ".").map(String.init)
        #expect(pieces.count == 3)
        let claims = try JSONSerialization.jsonObject(with: try #require(Secrets.base64URLDecode(pieces[1]))) as? [String: Any]
        #expect(claims?["aud"] as? String == "https://push.example.net:8443")
        #expect(claims?["sub"] as? String == "mailto:ops@example.com")
        #expect(claims?["exp"] as? Int == 1_800_000_000 + 12 * 3600)
        let signature = try P256.Signing.ECDSASignature(rawRepresentation: try #require(Secrets.base64URLDecode(pieces[2])))
        #expect(key.privateKey.publicKey.isValidSignature(signature, for: Data("\(pieces[0]).\(pieces[1])".utf8)))
        // the default port is not part of the origin
        let plain = try key.authorization(for: URL(string: "https://fcm.googleapis.com/fcm/send/x")!, now: now)
        let plainClaims = try JSONSerialization.jsonObject(
            with: try #require(Secrets.base64URLDecode(String(plain.split(separator: " ")[1].dropFirst(2).dropLast()).split(separator: ".")[1]))
        ) as? [String: Any]
        #expect(plainClaims?["aud"] as? String == "https://fcm.googleapis.com")
    }

    @Test func generatedKeysLoadAndTopicsFitRFC8030() throws {
        let pair = WebPush.VAPIDKey.generate()
        let key = try #require(WebPush.VAPIDKey(base64URL: pair.privateKey, subject: "https://example.com"))
        #expect(key.publicKey == pair.publicKey)
        #expect(WebPush.VAPIDKey(base64URL: "c2hvcnQ", subject: "mailto:a@b.c") == nil)
        let topic = WebPush.topic(chatID: UUID(uuidString: "0192F3A4-0000-7000-8000-00000000ABCD")!)
        #expect(topic == "0192f3a4" + "0000" + "7000" + "8000" + "00000000abcd")
        #expect(topic.count == 32)
    }

    @Test func settingsRequireASubjectAndAcceptOnlyHTTPSEndpoints() throws {
        let pair = WebPush.VAPIDKey.generate()
        #expect(throws: ConfigurationError.self) { try PushSettings.load(SettingsReader(["PARLEY_VAPID_PRIVATE_KEY": pair.privateKey])) }
        #expect(throws: ConfigurationError.self) {
            try PushSettings.load(SettingsReader(["PARLEY_VAPID_PRIVATE_KEY": pair.privateKey, "PARLEY_VAPID_SUBJECT": "ops@example.com"]))
        }
        #expect(throws: ConfigurationError.self) {
            try PushSettings.load(SettingsReader(["PARLEY_VAPID_PRIVATE_KEY": "nope", "PARLEY_VAPID_SUBJECT": "mailto:ops@example.com"]))
        }
        #expect(throws: ConfigurationError.self) { try PushSettings.load(SettingsReader(["PARLEY_VAPID_SUBJECT": "mailto:ops@example.com"])) }
        #expect(try PushSettings.load(SettingsReader([:])).vapid == nil)
        let settings = try PushSettings.load(SettingsReader(["PARLEY_VAPID_PRIVATE_KEY": pair.privateKey, "PARLEY_VAPID_SUBJECT": "mailto:ops@example.com"]))
        #expect(settings.vapid?.publicKey == pair.publicKey)
        #expect(settings.acceptsEndpoint("https://push.example.net/x") != nil)
        #expect(settings.acceptsEndpoint("http://127.0.0.1:9/x") == nil)
        #expect(settings.acceptsEndpoint("https://user:pw@push.example.net/x") == nil)
        #expect(settings.acceptsEndpoint("ftp://push.example.net/x") == nil)
        #expect(settings.acceptsEndpoint("https:///x") == nil)
        for address in ["https://10.0.0.8/x", "https://127.1/x", "https://2130706433/x", "https://0x7f.0.0.1/x", "https://[::1]:8443/x", "https://localhost/x",
                        "https://LOCALHOST./x", "https://a.localhost/x", "https://redis/x", "https://postgres.:5432/x", "https://push.example.net:6379/x"] {
            #expect(settings.acceptsEndpoint(address) == nil, "\(address)")
        }
        #expect(settings.acceptsEndpoint("https://fcm.googleapis.com/fcm/send/abc") != nil)
        #expect(settings.acceptsEndpoint("https://push.example.net:443/x") != nil)
        #expect(settings.acceptsEndpoint("https://push.10x.example/x") != nil, "a name with digits is a name")
        #expect(settings.acceptsEndpoint("https://push.example.net/" + String(repeating: "a", count: 2048)) == nil)
        let insecure = try PushSettings.load(SettingsReader(["PARLEY_PUSH_ALLOW_HTTP": "1"]))
        #expect(insecure.acceptsEndpoint("http://127.0.0.1:9/x") != nil)
    }

    /// The receiving side of RFC 8291 (what a browser does), for the round trip.
    static func decrypt(_ body: Data, receiver: P256.KeyAgreement.PrivateKey, auth: Data) throws -> Data {
        let bytes = [UInt8](body)
        let salt = Data(bytes[0..<16]), keyLength = Int(bytes[20])
        let senderPublic = Data(bytes[21..<(21 + keyLength)])
        let shared = try receiver.sharedSecretFromKeyAgreement(with: P256.KeyAgreement.PublicKey(x963Representation: senderPublic))
        let info = Data("WebPush: info".utf8) + [0] + receiver.publicKey.x963Representation + senderPublic
        let ikm = shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: auth, sharedInfo: info, outputByteCount: 32)
        let key = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, salt: salt, info: Data("Content-Encoding: aes128gcm".utf8) + [0], outputByteCount: 16)
        let nonce = HKDF<SHA256>.deriveKey(inputKeyMaterial: ikm, salt: salt, info: Data("Content-Encoding: nonce".utf8) + [0], outputByteCount: 12)
        let record = Data(bytes[(21 + keyLength)...])
        let box = try AES.GCM.SealedBox(
            nonce: AES.GCM.Nonce(data: nonce.withUnsafeBytes { Data($0) }), ciphertext: record.dropLast(16), tag: record.suffix(16)
        )
        let padded = try AES.GCM.open(box, using: key)
        guard padded.last == 2 else { throw CryptoKitError.incorrectParameterSize }
        return padded.dropLast()
    }
}
