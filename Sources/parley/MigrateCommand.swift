import ArgumentParser
import Logging
import ParleyCore

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply pending schema migrations (safe to run from several processes at once)."
    )

    @OptionGroup var common: CommonOptions

    func run() async throws {
        try await runCommand {
            let reader = self.common.settings()
            let database = try DatabaseSettings.load(reader)
            let logger = bootstrapLogging(level: try LogSettings.load(reader), label: "parley.migrate", format: try LogFormat.load(reader))
            let applied = try await Migrator().run(database: database, logger: logger)
            logger.info("migrations complete", metadata: ["migrations.applied": "\(applied.count)"])
        }
    }
}
