import Foundation
import ParleyCore

/// A user on the wire. Others see `id`, `display_name` and `created_at`
/// only; the caller's own user (`/v1/me`, tokens) adds the private fields.
struct UserBody: Encodable {
    let id: String
    let displayName: String
    let createdAt: String
    let email: String?
    let emailVerified: Bool?
    let emailNotifications: Bool?

    /// As anyone may see it: never the email address.
    static func visible(_ user: UserRecord) -> UserBody {
        UserBody(user, includePrivate: false)
    }

    /// The caller's own.
    static func own(_ user: UserRecord) -> UserBody {
        UserBody(user, includePrivate: true)
    }

    private init(_ user: UserRecord, includePrivate: Bool) {
        self.id = user.id.lowercased
        self.displayName = user.displayName
        self.createdAt = Timestamp.format(user.createdAt)
        self.email = includePrivate ? user.email : nil
        self.emailVerified = includePrivate ? user.emailVerified : nil
        self.emailNotifications = includePrivate ? user.emailNotifications : nil
    }

    enum CodingKeys: String, CodingKey {
        case id, email
        case displayName = "display_name"
        case createdAt = "created_at"
        case emailVerified = "email_verified"
        case emailNotifications = "email_notifications"
    }
}

struct TokensBody: Encodable {
    let accessToken: String
    let tokenType = "Bearer"
    let expiresIn = Int(AccessTokens.lifetime)
    let refreshToken: String
    let user: UserBody

    enum CodingKeys: String, CodingKey {
        case user
        case accessToken = "access_token"
        case tokenType = "token_type"
        case expiresIn = "expires_in"
        case refreshToken = "refresh_token"
    }
}

struct RegisterRequest: Decodable {
    let email: String
    let password: String
    let displayName: String

    enum CodingKeys: String, CodingKey {
        case email, password
        case displayName = "display_name"
    }
}

struct LoginRequest: Decodable {
    let email: String
    let password: String
}

struct CodeRequest: Decodable {
    let email: String
}

struct CodeVerifyRequest: Decodable {
    let email: String
    let code: String
}

struct RefreshTokenRequest: Decodable {
    let refreshToken: String

    enum CodingKeys: String, CodingKey {
        case refreshToken = "refresh_token"
    }
}

struct UpdateMeRequest: Decodable {
    let displayName: String?
    let emailNotifications: Bool?

    enum CodingKeys: String, CodingKey {
        case displayName = "display_name"
        case emailNotifications = "email_notifications"
    }
}

struct UserList: Encodable {
    let users: [UserBody]
}

struct EmptyObject: Encodable {}

/// One of the caller's sessions (`GET /v1/me/sessions`).
struct SessionBody: Encodable {
    let id: String
    let createdAt: String
    let lastUsedAt: String
    let userAgent: String?
    let current: Bool

    init(_ session: SessionRecord, current: Bool) {
        self.id = session.id.lowercased
        self.createdAt = Timestamp.format(session.createdAt)
        self.lastUsedAt = Timestamp.format(session.lastUsedAt)
        self.userAgent = session.userAgent
        self.current = current
    }

    enum CodingKeys: String, CodingKey {
        case id, current
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case userAgent = "user_agent"
    }
}

struct SessionListBody: Encodable {
    let sessions: [SessionBody]
}

/// `DELETE /v1/me`: the password, or a fresh email code.
struct DeleteAccountRequest: Decodable {
    let password: String?
    let code: String?
}

/// `POST /v1/me/email/verify`.
struct VerifyEmailRequest: Decodable {
    let code: String
}
