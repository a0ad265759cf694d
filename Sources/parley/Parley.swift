import ArgumentParser

@main
struct Parley: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley",
        abstract: "Parley: a realtime chat backend.",
        subcommands: [ServeCommand.self, MigrateCommand.self, MailerCommand.self, MailKeyCommand.self, VAPIDKeyCommand.self, BenchCommand.self]
    )
}
