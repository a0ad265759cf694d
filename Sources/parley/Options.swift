import ArgumentParser
import Foundation
import Logging
import ParleyCore

/// Flags shared by the commands; each falls back to its environment variable.
struct CommonOptions: ParsableArguments {
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (env PARLEY_DATABASE_URL).")
    var databaseURL: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical (env PARLEY_LOG_LEVEL).")
    var logLevel: String?

    /// Environment variables overlaid with the flags that were given.
    func settings(_ extra: [String: String?] = [:]) -> SettingsReader {
        var values = ProcessInfo.processInfo.environment
        let flags: [String: String?] = ["PARLEY_DATABASE_URL": self.databaseURL, "PARLEY_LOG_LEVEL": self.logLevel].merging(extra) { $1 }
        for case (let name, let value?) in flags { values[name] = value }
        return SettingsReader(values)
    }
}

/// `--redis-url`, for the commands that talk to Redis.
struct RedisOptions: ParsableArguments {
    @Option(name: .customLong("redis-url"), help: "Redis URL (env PARLEY_REDIS_URL).")
    var redisURL: String?

    var overlay: [String: String?] { [RedisSettings.variable: self.redisURL] }
}

/// Runs a command body; a configuration error becomes one line on stderr and
/// exit code 78 (EX_CONFIG), any other failure one line and exit code 1.
func runCommand(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ConfigurationError {
        FileHandle.standardError.write(Data("parley: \(error)\n".utf8))
        throw ExitCode(78)
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("parley: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// Logs go to stdout, one line each, at the configured level: readable
/// text, or one JSON object per line (`PARLEY_LOG_FORMAT=json`).
func bootstrapLogging(level: Logger.Level, label: String, format: LogFormat = .text) -> Logger {
    LoggingSystem.bootstrap { label in
        switch format {
        case .text:
            var handler = StreamLogHandler.standardOutput(label: label)
            handler.logLevel = level
            return handler
        case .json:
            var handler = JSONLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
    }
    var logger = Logger(label: label)
    logger.logLevel = level
    return logger
}
