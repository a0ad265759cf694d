import ArgumentParser
import ParleyCore

/// Prints a new VAPID key pair for Web Push (RFC 8292): the private key
/// for PARLEY_VAPID_PRIVATE_KEY (gateways and notifiers) and the public key
/// browsers subscribe with (the gateways also serve it).
struct VAPIDKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vapid-key",
        abstract: "Print a new VAPID key pair for Web Push: PARLEY_VAPID_PRIVATE_KEY=… and the public key."
    )

    @Flag(name: .customLong("private-only"), help: "Print only the private key (base64url), for scripts.")
    var privateOnly = false

    func run() async throws {
        let pair = WebPush.VAPIDKey.generate()
        if self.privateOnly {
            print(pair.privateKey)
        } else {
            print("PARLEY_VAPID_PRIVATE_KEY=\(pair.privateKey)")
            print("# public key (GET /v1/push/vapid-public-key serves it): \(pair.publicKey)")
        }
    }
}
