import Foundation

/// Splits a SQL script into statements at top-level semicolons, so that each
/// runs through the extended protocol (which takes one statement at a time).
///
/// Semicolons inside single-quoted strings (with '' escapes), E'' strings,
/// double-quoted identifiers, dollar-quoted bodies (`$$ … $$`, `$tag$ … $tag$`),
/// line comments and nested block comments do not split. Statements that are
/// empty or only comments are dropped.
public enum SQLStatementSplitter {
    public static func split(_ script: String) -> [String] {
        let chars = Array(script.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var hasCode = false
        var i = 0

        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if hasCode && !text.isEmpty { statements.append(text) }
            current = String.UnicodeScalarView()
            hasCode = false
        }
        func copy(_ from: Int, _ to: Int) {
            current.append(contentsOf: chars[from..<min(to, chars.count)])
        }

        while i < chars.count {
            let c = chars[i]
            let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
            switch c {
            case "-" where next == "-":
                var j = i
                while j < chars.count && chars[j] != "\n" { j += 1 }
                copy(i, j)
                i = j
            case "/" where next == "*":
                var depth = 1
                var j = i + 2
                while j < chars.count && depth > 0 {
                    if chars[j] == "/" && j + 1 < chars.count && chars[j + 1] == "*" {
                        depth += 1
                        j += 2
                    } else if chars[j] == "*" && j + 1 < chars.count && chars[j + 1] == "/" {
                        depth -= 1
                        j += 2
                    } else {
                        j += 1
                    }
                }
                copy(i, j)
                i = j
            case "'", "\"":
                let escapesWithBackslash = c == "'" && i > 0 && (chars[i - 1] == "E" || chars[i - 1] == "e")
                var j = i + 1
                while j < chars.count {
                    if escapesWithBackslash && chars[j] == "\\" {
                        j += 2
                        continue
                    }
                    if chars[j] == c {
                        if j + 1 < chars.count && chars[j + 1] == c {
                            j += 2
                            continue
                        }
                        break
                    }
                    j += 1
                }
                copy(i, j + 1)
                hasCode = true
                i = j + 1
            case "$":
                // $tag$ where tag is empty or an identifier not starting with a digit.
                var j = i + 1
                while j < chars.count && (chars[j] == "_" || chars[j].properties.isAlphabetic || ("0"..."9").contains(chars[j])) { j += 1 }
                let isTag = j < chars.count && chars[j] == "$" && !(i + 1 < chars.count && ("0"..."9").contains(chars[i + 1]))
                if isTag {
                    let tag = Array(chars[i...j])
                    var k = j + 1
                    var end = chars.count
                    while k + tag.count <= chars.count {
                        if Array(chars[k..<(k + tag.count)]) == tag {
                            end = k + tag.count
                            break
                        }
                        k += 1
                    }
                    copy(i, end)
                    i = end
                } else {
                    copy(i, i + 1)
                    i += 1
                }
                hasCode = true
            case ";":
                flush()
                i += 1
            default:
                current.append(c)
                if !c.properties.isWhitespace { hasCode = true }
                i += 1
            }
        }
        flush()
        return statements
    }
}
