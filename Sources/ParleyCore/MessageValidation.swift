/// Limits of a message body (PROTOCOL.md). Pure.
public enum MessageValidation {
    public static let maxCharacters = 4000
    public static let maxBytes = 16 * 1024
    public static let maxAttachments = 10

    /// The body to store: 1–4,000 characters and at most 16 KiB of UTF-8, or
    /// nil/empty when attachments carry the message. Stored byte for byte.
    public static func body(_ body: String?, hasAttachments: Bool) -> Result<String?, InvalidBody> {
        guard let body, !body.isEmpty else { return hasAttachments ? .success(nil) : .failure(InvalidBody()) }
        guard body.count <= Self.maxCharacters, body.utf8.count <= Self.maxBytes else { return .failure(InvalidBody()) }
        return .success(body)
    }

    public struct InvalidBody: Error {}
}
