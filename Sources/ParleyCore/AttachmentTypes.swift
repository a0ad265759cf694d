/// The content types attachments may have, and a check of the bytes against
/// the declared type (magic numbers; text must be UTF-8 without NUL). Pure.
public enum AttachmentTypes {
    public static let maxSize = 10 * 1024 * 1024
    public static let allowed: Set<String> = ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"]

    /// The media type of a Content-Type header, lower-cased, without parameters.
    public static func mediaType(_ header: String) -> String {
        String(header.split(separator: ";", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces).lowercased()
    }

    public static func matches(_ type: String, _ bytes: some Collection<UInt8>) -> Bool {
        let head = Array(bytes.prefix(16))
        func starts(_ magic: [UInt8]) -> Bool { head.count >= magic.count && Array(head.prefix(magic.count)) == magic }
        switch type {
        case "image/png": return starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        case "image/jpeg": return starts([0xFF, 0xD8, 0xFF])
        case "image/gif": return starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8))
        case "image/webp": return head.count >= 12 && starts(Array("RIFF".utf8)) && Array(head[8..<12]) == Array("WEBP".utf8)
        case "application/pdf": return starts(Array("%PDF-".utf8))
        case "text/plain": return !bytes.contains(0) && String(validating: Array(bytes), as: UTF8.self) != nil
        default: return false
        }
    }
}

import Foundation
