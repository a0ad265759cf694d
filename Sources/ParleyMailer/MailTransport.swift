import CCurlSMTP
public import Foundation
public import NIOPosix

/// Where mails go: an SMTP server, or (development) a folder of .eml files.
public protocol MailTransport: Sendable {
    /// Returns once the server accepted the message; throws otherwise.
    func send(_ message: MailMessage) async throws
    var description: String { get }
}

public struct MailDeliveryError: Error, CustomStringConvertible {
    public let description: String
}

/// SMTP through libcurl, run on the NIO thread pool (never on an event loop).
public struct CurlSMTPTransport: MailTransport {
    let url: String
    let username: String?
    let password: String?
    let envelopeFrom: String
    let timeoutSeconds: Int
    let requireTLS: Bool
    let pool: NIOThreadPool

    /// `url`: smtp://[user:password@]host:port or smtps://…; with `requireTLS`
    /// (the default) an smtp:// server must take STARTTLS or nothing is sent.
    public init(url: URLComponents, envelopeFrom: String, requireTLS: Bool = true, timeoutSeconds: Int = 30, pool: NIOThreadPool = .singleton) {
        self.requireTLS = requireTLS
        var bare = url
        self.username = url.percentEncodedUser?.removingPercentEncoding
        self.password = url.percentEncodedPassword?.removingPercentEncoding
        bare.user = nil
        bare.password = nil
        self.url = bare.string ?? ""
        self.envelopeFrom = envelopeFrom
        self.timeoutSeconds = timeoutSeconds
        self.pool = pool
    }

    public var description: String { "SMTP \(self.url)\(self.requireTLS ? " (TLS required)" : " (plaintext)")" }

    public func send(_ message: MailMessage) async throws {
        let data = Array(message.rendered().utf8)
        let (url, user, password, from, to, timeout, tls) = (
            self.url, self.username, self.password, "<\(self.envelopeFrom)>", "<\(message.to.email)>", self.timeoutSeconds, Int32(self.requireTLS ? 1 : 0)
        )
        let failure: String? = try await self.pool.runIfActive {
            var error = [CChar](repeating: 0, count: 512)
            let rc = to.withCString { rcpt -> Int32 in
                var recipients: [UnsafePointer<CChar>?] = [rcpt]
                return recipients.withUnsafeMutableBufferPointer { list in
                    data.withUnsafeBufferPointer { bytes in
                        bytes.withMemoryRebound(to: CChar.self) { chars in
                            parley_smtp_send(url, user, password, from, list.baseAddress, 1, chars.baseAddress, chars.count, timeout, tls, &error)
                        }
                    }
                }
            }
            return rc == 0 ? nil : String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if let failure { throw MailDeliveryError(description: failure) }
    }
}

/// Development: each mail becomes `<message-id>.eml` in a folder.
public struct OutboxTransport: MailTransport {
    let directory: URL

    public init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
    }

    public var description: String { "outbox \(self.directory.path)" }

    public func send(_ message: MailMessage) async throws {
        let file = self.directory.appendingPathComponent(message.messageID.replacingOccurrences(of: "/", with: "_") + ".eml")
        try Data(message.rendered().utf8).write(to: file, options: .atomic)
    }
}
