import ArgumentParser
import Foundation
import ParleyCore

/// Prints the key a mailer needs (PARLEY_MAIL_KEY), derived from the
/// gateways' PARLEY_JWT_SECRET, so that mailers never hold the JWT secret.
struct MailKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mail-key",
        abstract: "Print the PARLEY_MAIL_KEY for mailers, derived from PARLEY_JWT_SECRET (read from the environment)."
    )

    func run() async throws {
        try await runCommand {
            let reader = SettingsReader(ProcessInfo.processInfo.environment)
            guard let secret = try JWTSecretSettings.load(reader) else {
                throw ConfigurationError(JWTSecretSettings.variable, "missing (set it to the gateways' secret to derive the mail key from it)")
            }
            print(OneTimeCodes.mailJobKeyText(secret: secret))
        }
    }
}
