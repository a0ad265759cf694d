public import HiredisNIO
public import Logging

/// `PARLEY_LOG_LEVEL`: trace, debug, info (default), notice, warning, error, critical.
public enum LogSettings {
    public static let variable = "PARLEY_LOG_LEVEL"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> Logger.Level {
        try reader.choice(Self.variable, default: Logger.Level.info)
    }
}

/// `PARLEY_REDIS_URL`: `redis://[user:password@]host:port/db`.
public enum RedisSettings {
    public static let variable = "PARLEY_REDIS_URL"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> RedisConfiguration {
        let url = try reader.required(Self.variable, hint: "set it or pass --redis-url, e.g. redis://127.0.0.1:6379/0")
        do {
            return try RedisConfiguration(url: url)
        } catch {
            throw ConfigurationError(Self.variable, error.message)
        }
    }
}

/// `PARLEY_ENV`: `production` (default) or `development`. Development mode
/// generates a JWT secret when none is set and may log one-time codes.
public enum DeploymentEnvironment: String, Sendable, CaseIterable {
    case production
    case development

    public static let variable = "PARLEY_ENV"

    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> DeploymentEnvironment {
        try reader.choice(Self.variable, default: DeploymentEnvironment.production)
    }
}

/// `PARLEY_JWT_SECRET`: signs access tokens; the keys of one-time codes and
/// mail jobs are derived from it. At least 32 bytes.
public enum JWTSecretSettings {
    public static let variable = "PARLEY_JWT_SECRET"
    public static let minimumBytes = 32

    /// The secret, or nil when it is not set.
    public static func load(_ reader: SettingsReader) throws(ConfigurationError) -> [UInt8]? {
        guard let raw = reader.optional(Self.variable) else { return nil }
        let secret = Array(raw.utf8)
        guard secret.count >= Self.minimumBytes else {
            throw ConfigurationError(Self.variable, "must be at least \(Self.minimumBytes) bytes (got \(secret.count))")
        }
        return secret
    }
}
