import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import ParleyCore
import ParleyGateway
import ParleyTestSupport
import PostgresNIO
import Testing

/// `/v1/push…` (PROTOCOL.md 1.1 "Push") against the real PostgreSQL.
@Suite struct PushSubscriptionsTests {
    static let vapid = WebPush.VAPIDKey(privateKey: P256.Signing.PrivateKey(), subject: "mailto:ops@example.com")

    func live(push: PushSettings = PushSettings(vapid: Self.vapid), _ body: @escaping @Sendable (APITestClient) async throws -> Void) async throws {
        try await GatewayTestSupport.liveApp(push: push).test(.live) { client in try await body(APITestClient(client)) }
    }

    /// A browser's subscription: a fresh key pair and auth secret.
    static func subscription(_ endpoint: String = "https://push.example.net/wpush/\(UUID().uuidString)") -> [String: Any] {
        let key = P256.KeyAgreement.PrivateKey()
        return [
            "endpoint": endpoint,
            "keys": ["p256dh": Secrets.base64URL(key.publicKey.x963Representation), "auth": Secrets.randomToken(bytes: 16)],
        ]
    }

    @Test func theKeyAndSubscriptionsOfTheCaller() async throws {
        try await self.live { api in
            let (token, _, _) = try await api.register()
            let key = try await api.call(.get, "/v1/push/vapid-public-key", token: token)
            #expect(key.status == 200)
            #expect(key.json["key"] as? String == Self.vapid.publicKey)
            #expect(Secrets.base64URLDecode(Self.vapid.publicKey)?.count == 65)
            #expect(try await api.call(.get, "/v1/push/vapid-public-key").status == 401)

            let body = Self.subscription()
            let created = try await api.call(.post, "/v1/push/subscriptions", json: body, token: token)
            #expect(created.status == 201, "\(created.text)")
            let id = try #require(created.json["id"] as? String)
            // the same browser subscribing again (new keys): the same subscription
            let again = Self.subscription(body["endpoint"] as! String)
            #expect(try await api.call(.post, "/v1/push/subscriptions", json: again, token: token).json["id"] as? String == id)

            // another account signing in on that browser takes the endpoint over
            let (other, _, _) = try await api.register()
            #expect(try await api.call(.post, "/v1/push/subscriptions", json: again, token: other).json["id"] as? String == id)
            #expect(try await api.call(.delete, "/v1/push/subscriptions/\(id)", token: token).code == "subscription_not_found")
            #expect(try await api.call(.delete, "/v1/push/subscriptions/\(id)", token: other).status == 204)
            #expect(try await api.call(.delete, "/v1/push/subscriptions/\(id)", token: other).status == 404)
            #expect(try await api.call(.delete, "/v1/push/subscriptions/not-a-uuid", token: other).status == 404)
        }
    }

    @Test func badSubscriptionsAreRefusedAndTenIsTheMost() async throws {
        try await self.live { api in
            let (token, _, _) = try await api.register()
            let plainHTTP = Self.subscription("http://push.example.net/x")
            let badKey = ["p256dh": "BAAA", "auth": Secrets.randomToken(bytes: 16)]
            let shortAuth = ["p256dh": (Self.subscription()["keys"] as! [String: String])["p256dh"]!, "auth": "AAAA"]
            for (body, code) in [
                (plainHTTP, "invalid_endpoint"), (Self.subscription("push.example.net/x"), "invalid_endpoint"),
                (Self.subscription("https://push.example.net/" + String(repeating: "x", count: 2100)), "invalid_endpoint"),
                (["endpoint": "https://push.example.net/x", "keys": badKey], "invalid_keys"),
                (["endpoint": "https://push.example.net/x", "keys": shortAuth], "invalid_keys"),
                (["endpoint": "https://push.example.net/x"], "invalid_request"),
            ] as [([String: Any], String)] {
                let response = try await api.call(.post, "/v1/push/subscriptions", json: body, token: token)
                #expect(response.status == 400, "\(body): \(response.text)")
                #expect(response.code == code, "\(body): \(response.text)")
            }
            for _ in 0..<PushStore.perUser {
                #expect(try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token).status == 201)
            }
            let eleventh = try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token)
            #expect(eleventh.status == 409)
            #expect(eleventh.code == "too_many_subscriptions")
        }
    }

    @Test func subscriptionsOfExpiredSessionsDoNotCountTowardsTheLimit() async throws {
        try await self.live { api in
            let (token, _, userID) = try await api.register()
            for _ in 0..<PushStore.perUser {
                #expect(try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token).status == 201)
            }
            #expect(try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token).status == 409)
            // nine of the ten devices' sessions ran out long ago (nothing revoked them)
            try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                let user = try #require(UUID(uuidString: userID))
                try await postgres.query(
                    """
                    WITH old AS (
                        INSERT INTO sessions (id, user_id, expires_at) VALUES (\(UUID()), \(user), now() - interval '1 day') RETURNING id
                    )
                    UPDATE push_subscriptions SET session_id = (SELECT id FROM old)
                    WHERE id IN (SELECT id FROM push_subscriptions WHERE user_id = \(user) ORDER BY id LIMIT 9)
                    """,
                    logger: TestEnvironment.logger
                )
            }
            #expect(try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token).status == 201, "room again")
            let user = try #require(UUID(uuidString: userID))
            let left = try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                try await PushStore(database: Database(client: postgres, health: DatabaseHealth(logger: TestEnvironment.logger)), logger: TestEnvironment.logger)
                    .count(of: user)
            }
            #expect(left == 2, "the expired sessions' subscriptions are gone")
        }
    }

    @Test func aSubscriptionEndsWithItsSession() async throws {
        try await self.live { api in
            let (token, refresh, userID) = try await api.register()
            #expect(try await api.call(.post, "/v1/push/subscriptions", json: Self.subscription(), token: token).status == 201)
            try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
                let store = PushStore(database: Database(client: postgres, health: DatabaseHealth(logger: TestEnvironment.logger)), logger: TestEnvironment.logger)
                let user = try #require(UUID(uuidString: userID))
                #expect(try await store.count(of: user) == 1)
                #expect(try await api.call(.post, "/v1/auth/logout", json: ["refresh_token": refresh], token: token).status == 204)
                #expect(try await store.count(of: user) == 0, "logging out deletes the session's subscriptions")
            }
        }
    }

    @Test func withoutAVAPIDKeyPushIsOff() async throws {
        try await self.live(push: PushSettings()) { api in
            let (token, _, _) = try await api.register()
            for (method, path) in [(HTTPRequest.Method.get, "/v1/push/vapid-public-key"), (.post, "/v1/push/subscriptions"), (.delete, "/v1/push/subscriptions/\(UUID())")] {
                let response = try await api.call(method, path, json: Self.subscription(), token: token)
                #expect(response.status == 404, "\(path)")
                #expect(response.code == "push_disabled", "\(path)")
            }
        }
    }
}
