/// Limits of a message body (PROTOCOL.md). Pure.
public enum MessageValidation {
    public static let maxCharacters = 4000
    public static let maxBytes = 16 * 1024
    public static let maxAttachments = 10

    /// The body to store: 1–4,000 characters and at most 16 KiB of UTF-8, or
    /// nil/empty when attachments carry the message. Stored byte for byte.
    public static func body(_ body: String?, hasAttachments: Bool) -> Result<String?, InvalidBody> {
        guard let body, !body.isEmpty else { return hasAttachments ? .success(nil) : .failure(InvalidBody()) }
        guard body.count <= Self.maxCharacters, body.utf8.count <= Self.maxBytes, !Self.hasForbiddenControl(body) else { return .failure(InvalidBody()) }
        return .success(body)
    }

    public struct InvalidBody: Error {}

    /// NUL cannot be stored in PostgreSQL text; other C0 controls but tab,
    /// newline and carriage return have no place in chat text either.
    public static func hasForbiddenControl(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" && $0 != "\n" && $0 != "\r" }
    }
}
