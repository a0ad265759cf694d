public import Foundation

/// One mail, rendered as RFC 5322 + MIME: multipart/alternative with UTF-8
/// text/plain and text/html parts (base64), RFC 2047 encoded-words for
/// non-ASCII header text, a Date and a Message-ID. Pure.
public struct MailMessage: Sendable, Hashable {
    public struct Address: Sendable, Hashable {
        public var email: String
        public var name: String?

        public init(email: String, name: String? = nil) {
            self.email = email
            self.name = name
        }

        var header: String {
            guard let name, !name.isEmpty else { return "<\(self.email)>" }
            return "\(MailMessage.encodeWord(name, quoteIfASCII: true)) <\(self.email)>"
        }
    }

    public var from: Address
    public var to: Address
    public var subject: String
    public var text: String
    public var html: String
    public var messageID: String
    public var date: Date

    public init(from: Address, to: Address, subject: String, text: String, html: String, messageID: String, date: Date = Date()) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.messageID = messageID
        self.date = date
    }

    public func rendered() -> String {
        let boundary = "=_parley_" + String(self.messageID.utf8.reduce(UInt64(14695981039346656037)) { ($0 ^ UInt64($1)) &* 1099511628211 }, radix: 36)
        var lines = [
            "From: \(self.from.header)",
            "To: \(self.to.header)",
            "Subject: \(Self.encodeWord(self.subject, quoteIfASCII: false))",
            "Date: \(Self.rfc5322Date(self.date))",
            "Message-ID: <\(self.messageID)>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"\(boundary)\"",
            "",
            "--\(boundary)",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            "",
        ]
        lines += Self.base64Lines(self.text)
        lines += ["", "--\(boundary)", "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: base64", ""]
        lines += Self.base64Lines(self.html)
        lines += ["", "--\(boundary)--", ""]
        return lines.joined(separator: "\r\n")
    }

    /// RFC 2047 "=?utf-8?B?…?=" for non-ASCII text (split to keep lines short); ASCII as is (quoted for display names).
    static func encodeWord(_ text: String, quoteIfASCII: Bool) -> String {
        let clean = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if clean.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 }) {
            guard quoteIfASCII else { return clean }
            return "\"" + clean.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var words: [String] = []
        var chunk = ""
        for character in clean {
            if (chunk + String(character)).utf8.count > 45 {
                words.append(chunk)
                chunk = ""
            }
            chunk.append(character)
        }
        if !chunk.isEmpty { words.append(chunk) }
        return words.map { "=?utf-8?B?\(Data($0.utf8).base64EncodedString())?=" }.joined(separator: "\r\n ")
    }

    static func base64Lines(_ text: String) -> [String] {
        let encoded = Data(text.utf8).base64EncodedString()
        return stride(from: 0, to: encoded.count, by: 76).map { start in
            let from = encoded.index(encoded.startIndex, offsetBy: start)
            let to = encoded.index(from, offsetBy: min(76, encoded.count - start))
            return String(encoded[from..<to])
        }
    }

    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        return formatter.string(from: date)
    }
}
