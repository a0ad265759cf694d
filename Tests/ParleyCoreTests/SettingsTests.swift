import HiredisNIO
import Logging
import ParleyCore
import Testing

@Suite struct SettingsTests {
    @Test func databaseURLParts() throws {
        let settings = try DatabaseSettings(url: "postgres://app:s%3Acret@db.internal:6543/chat?sslmode=require")
        #expect(settings.host == "db.internal")
        #expect(settings.port == 6543)
        #expect(settings.username == "app")
        #expect(settings.password == "s:cret")
        #expect(settings.database == "chat")
        #expect(settings.requireTLS)
    }

    @Test(arguments: [
        ("mysql://u@h/db", "scheme must be postgres://"),
        ("postgres://h/db", "missing user name"),
        ("postgres://u@h", "missing database name"),
        ("postgres://u@h:70000/db", "out of range"),
        ("postgres://u@h/db?sslmode=sometimes", "sslmode must be"),
        ("postgres://u@h/db?foo=bar", "unknown parameter"),
    ])
    func malformedDatabaseURLsNameTheProblem(url: String, problem: String) {
        #expect {
            _ = try DatabaseSettings(url: url)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.setting == "PARLEY_DATABASE_URL" && error.problem.contains(problem)
        }
    }

    @Test func missingRequiredSettingSaysHowToSetIt() {
        #expect {
            _ = try DatabaseSettings.load(SettingsReader([:]))
        } throws: { error in
            (error as? ConfigurationError)?.description.hasPrefix("configuration error: PARLEY_DATABASE_URL: missing") ?? false
        }
        #expect {
            _ = try RedisSettings.load(SettingsReader(["PARLEY_REDIS_URL": "   "]))
        } throws: { error in
            (error as? ConfigurationError)?.setting == "PARLEY_REDIS_URL"
        }
    }

    @Test func redisURLErrorsBecomeConfigurationErrors() {
        #expect {
            _ = try RedisSettings.load(SettingsReader(["PARLEY_REDIS_URL": "redis://localhost/abc"]))
        } throws: { error in
            (error as? ConfigurationError)?.problem.contains("database must be") ?? false
        }
    }

    @Test func integersBooleansAndLevels() throws {
        let reader = SettingsReader(["N": "12", "BAD": "twelve", "BIG": "99999", "B": "yes", "PARLEY_LOG_LEVEL": "DEBUG"])
        #expect(try reader.integer("N", default: 1, range: 0...100) == 12)
        #expect(try reader.integer("MISSING", default: 7, range: 0...100) == 7)
        #expect(throws: ConfigurationError.self) { try reader.integer("BAD", default: 1, range: 0...100) }
        #expect(throws: ConfigurationError.self) { try reader.integer("BIG", default: 1, range: 0...100) }
        #expect(try reader.boolean("B", default: false))
        #expect(try LogSettings.load(reader) == .debug)
        #expect(throws: ConfigurationError.self) { try LogSettings.load(SettingsReader(["PARLEY_LOG_LEVEL": "loud"])) }
        #expect(throws: ConfigurationError.self) { try DeploymentEnvironment.load(SettingsReader(["PARLEY_ENV": "staging"])) }
    }
}
