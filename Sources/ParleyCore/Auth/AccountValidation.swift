/// Normalisation and validation of what users type into account forms. Pure.
public enum AccountValidation {
    /// Trimmed and lower-cased; nil when it is not a plausible address
    /// (ASCII, one @, a dotted domain, at most 254 characters).
    public static func normalizeEmail(_ raw: String) -> String? {
        let email = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard email.utf8.count <= 254, email.unicodeScalars.allSatisfy({ $0.isASCII }) else { return nil }
        let parts = email.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let (local, domain) = (parts[0], parts[1])
        let localAllowed = Set("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~.-")
        guard (1...64).contains(local.count), local.allSatisfy(localAllowed.contains),
            local.first != ".", local.last != ".", !local.contains("..")
        else { return nil }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        let labelAllowed = Set("abcdefghijklmnopqrstuvwxyz0123456789-")
        guard labels.count >= 2,
            labels.allSatisfy({ (1...63).contains($0.count) && $0.allSatisfy(labelAllowed.contains) && $0.first != "-" && $0.last != "-" }),
            let tld = labels.last, tld.count >= 2, !tld.allSatisfy(\.isNumber),
            // reserved (RFC 2606), and what deleted accounts are given
            tld != "invalid"
        else { return nil }
        return email
    }

    public static let displayNameLength = 1...64

    /// Trimmed; nil when empty, longer than 64 characters, or containing
    /// control or bidirectional override characters.
    public static func displayName(_ raw: String) -> String? {
        Self.label(raw, length: Self.displayNameLength)
    }

    /// A name people read (display names, chat titles): trimmed, then
    /// `length` counted in Unicode code points, as PostgreSQL's
    /// `char_length` counts (an "e" followed by 70 combining accents is one
    /// character on screen and 71 here); no control characters, line or
    /// paragraph separators, or bidirectional embeddings, overrides and
    /// isolates (U+202A–U+202E, U+2066–U+2069), which could make a name
    /// display as another one.
    public static func label(_ raw: String, length: ClosedRange<Int>) -> String? {
        let name = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard length.contains(name.unicodeScalars.count),
            !name.unicodeScalars.contains(where: { scalar in
                scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}"
                    || (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
            })
        else { return nil }
        return name
    }

    /// The display name of an account created from an email code: the local part.
    public static func defaultDisplayName(email: String) -> String {
        String(email.split(separator: "@").first?.prefix(64) ?? "user")
    }

    /// 8–256 characters (grapheme clusters), never truncated.
    public static func isAcceptablePassword(_ password: String) -> Bool {
        (8...256).contains(password.count)
    }
}

import Foundation
