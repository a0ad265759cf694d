public import Foundation

/// Limits of a message body (PROTOCOL.md). Pure.
public enum MessageValidation {
    public static let maxCharacters = 4000
    public static let maxBytes = 16 * 1024
    public static let maxAttachments = 10
    /// Different emoji on one message (PROTOCOL.md 1.1).
    public static let maxReactionEmoji = 20
    public static let maxEmojiBytes = 32
    /// Users mentioned in one message (PROTOCOL.md 1.1).
    public static let maxMentions = 50

    /// The body to store: 1–4,000 characters and at most 16 KiB of UTF-8, or
    /// nil/empty when attachments carry the message. Stored byte for byte.
    public static func body(_ body: String?, hasAttachments: Bool) -> Result<String?, InvalidBody> {
        guard let body, !body.isEmpty else { return hasAttachments ? .success(nil) : .failure(InvalidBody()) }
        guard body.count <= Self.maxCharacters, body.utf8.count <= Self.maxBytes, !Self.hasForbiddenControl(body) else { return .failure(InvalidBody()) }
        return .success(body)
    }

    public struct InvalidBody: Error {}

    /// The mentions of a send: at most 50 user ids, stored once each in the
    /// order first given (whether each is a member is the store's check).
    public static func mentions(_ raw: [String]) -> Result<[UUID], InvalidMentions> {
        guard raw.count <= Self.maxMentions else { return .failure(InvalidMentions()) }
        var seen = Set<UUID>(), mentions: [UUID] = []
        for text in raw {
            guard let id = UUID(uuidString: text) else { return .failure(InvalidMentions()) }
            if seen.insert(id).inserted { mentions.append(id) }
        }
        return .success(mentions)
    }

    public struct InvalidMentions: Error {}

    /// A reaction: one grapheme cluster of at most 32 bytes of UTF-8 that is
    /// an emoji (not plain ASCII such as a digit, which Unicode also counts as
    /// emoji-capable). Nil when it is not one.
    public static func emoji(_ raw: String) -> String? {
        guard raw.count == 1, raw.utf8.count <= Self.maxEmojiBytes, !raw.allSatisfy(\.isASCII) else { return nil }
        let scalars = raw.unicodeScalars
        guard scalars.contains(where: { $0.properties.isEmoji }),
            !scalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
        else { return nil }
        return raw
    }

    /// NUL cannot be stored in PostgreSQL text; other C0 controls but tab,
    /// newline and carriage return have no place in chat text either.
    public static func hasForbiddenControl(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" && $0 != "\n" && $0 != "\r" }
    }
}
