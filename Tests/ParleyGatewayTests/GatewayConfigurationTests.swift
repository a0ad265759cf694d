import Logging
import ParleyCore
import ParleyGateway
import Testing

@Suite struct GatewayConfigurationTests {
    let base = [
        "PARLEY_DATABASE_URL": "postgres://parley@127.0.0.1:5432/parley",
        "PARLEY_REDIS_URL": "redis://127.0.0.1:6379/0",
        "PARLEY_JWT_SECRET": String(repeating: "s", count: 32),
    ]

    func load(_ changes: [String: String?]) throws -> GatewayConfiguration {
        var values = self.base
        for (key, value) in changes { values[key] = value }
        return try GatewayConfiguration.load(SettingsReader(values))
    }

    func expectError(_ changes: [String: String?], setting: String, containing text: String) {
        #expect {
            _ = try self.load(changes)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.setting == setting && error.problem.contains(text)
        }
    }

    @Test func defaults() throws {
        let configuration = try self.load([:])
        #expect(configuration.host == "127.0.0.1")
        #expect(configuration.port == 8080)
        #expect(configuration.environment == .production)
        #expect(configuration.allowedOrigins.isEmpty)
        #expect(configuration.logLevel == .info)
    }

    @Test func jwtSecretRules() throws {
        self.expectError(["PARLEY_JWT_SECRET": String(repeating: "s", count: 31)], setting: "PARLEY_JWT_SECRET", containing: "at least 32 bytes")
        self.expectError(["PARLEY_JWT_SECRET": nil], setting: "PARLEY_JWT_SECRET", containing: "missing")
        let development = try self.load(["PARLEY_JWT_SECRET": nil, "PARLEY_ENV": "development"])
        #expect(development.jwtSecret.count >= 32)
        #expect(development.startupWarnings.count == 1)
    }

    @Test func portAndOrigins() throws {
        self.expectError(["PARLEY_HTTP_PORT": "http"], setting: "PARLEY_HTTP_PORT", containing: "integer")
        self.expectError(["PARLEY_HTTP_PORT": "70000"], setting: "PARLEY_HTTP_PORT", containing: "between")
        self.expectError(["PARLEY_ALLOWED_ORIGINS": "https://ok.example, ftp://bad"], setting: "PARLEY_ALLOWED_ORIGINS", containing: "ftp://bad")
        self.expectError(["PARLEY_ALLOWED_ORIGINS": "https://example.com/path"], setting: "PARLEY_ALLOWED_ORIGINS", containing: "not an origin")
        let configuration = try self.load(["PARLEY_ALLOWED_ORIGINS": " https://Chat.Example.com , http://localhost:5173 ", "PARLEY_HTTP_PORT": "0"])
        #expect(configuration.allowedOrigins == ["https://chat.example.com", "http://localhost:5173"])
        #expect(configuration.port == 0)
    }

    @Test func theWebClientsMailHint() throws {
        #expect(try self.load([:]).webMailHint == nil)
        #expect(try self.load(["PARLEY_WEB_MAIL_HINT": " see .local/run/outbox "]).webMailHint == "see .local/run/outbox")
        self.expectError(["PARLEY_WEB_MAIL_HINT": String(repeating: "x", count: 301)], setting: "PARLEY_WEB_MAIL_HINT", containing: "300")
        self.expectError(["PARLEY_WEB_MAIL_HINT": "two\nlines"], setting: "PARLEY_WEB_MAIL_HINT", containing: "one line")
    }
}
