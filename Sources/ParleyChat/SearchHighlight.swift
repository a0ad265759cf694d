public import Foundation
import ParleyCore

/// The `highlight` of a search result (PROTOCOL.md 1.1): the body with every
/// word that matches a query word wrapped in `<mark>`…`</mark>` and all else
/// HTML-escaped. Pure.
///
/// Words are runs of letters, digits and combining marks; a body word
/// matches when its folded form (lower case, accents removed: what the
/// store's `unaccent` + `simple` tokenizing does) starts with a folded query
/// word, as the search itself matches every word as a prefix.
public enum SearchHighlight {
    public static let open = "<mark>"
    public static let close = "</mark>"

    /// The folded words of a query, each once, longest first.
    public static func queryWords(_ query: String) -> [String] {
        var seen = Set<String>()
        return Self.words(in: query).map { MessageSearch.fold(String(query[$0])) }.filter { seen.insert($0).inserted }.sorted { $0.count > $1.count }
    }

    public static func highlight(_ body: String, query words: [String]) -> String {
        var out = ""
        out.reserveCapacity(body.utf8.count + 16)
        var position = body.startIndex
        for range in Self.words(in: body) {
            out += HTML.escape(body[position..<range.lowerBound])
            let word = body[range]
            let folded = MessageSearch.fold(String(word))
            if words.contains(where: { folded.hasPrefix($0) }) {
                out += Self.open + HTML.escape(word) + Self.close
            } else {
                out += HTML.escape(word)
            }
            position = range.upperBound
        }
        out += HTML.escape(body[position...])
        return out
    }

    /// The ranges of the words of `text`, in order.
    static func words(in text: String) -> [Range<String.Index>] {
        var ranges: [Range<String.Index>] = []
        var start: String.Index?
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(after: index)
            if Self.isWordCharacter(text[index]) {
                if start == nil { start = index }
            } else if let begun = start {
                ranges.append(begun..<index)
                start = nil
            }
            index = next
        }
        if let start { ranges.append(start..<text.endIndex) }
        return ranges
    }

    static func isWordCharacter(_ character: Character) -> Bool {
        character.unicodeScalars.contains { $0.properties.isAlphabetic || $0.properties.numericType != nil }
            && !character.unicodeScalars.contains { $0.properties.isWhitespace }
    }
}
