// /docs: the reference as one self-contained HTML page (inline CSS, no
// scripts, nothing fetched from elsewhere), rendered from openapi.yaml.

extension APIReference {
    /// The whole reference as an HTML page.
    public func html() -> String {
        var page = HTMLPage()
        let title = self.spec["info"]?["title"]?.string ?? "API"
        let version = self.spec["info"]?["version"]?.string ?? ""
        page.raw("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        page.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        page.raw("<title>"); page.text("\(title) API reference"); page.raw("</title><style>\(Self.css)</style></head><body>")
        page.raw("<nav><p class=\"brand\">"); page.text(title); page.raw(" <small>"); page.text(version); page.raw("</small></p>")
        let groups = self.operationsByTag()
        for (tag, operations) in groups {
            page.raw("<p class=\"group\">"); page.text(tag); page.raw("</p><ul>")
            for operation in operations {
                page.raw("<li><a href=\"#\(Self.anchor(operation))\"><span class=\"m \(operation.method.lowercased())\">")
                page.text(operation.method); page.raw("</span> "); page.text(operation.path); page.raw("</a></li>")
            }
            page.raw("</ul>")
        }
        if self.spec["x-websocket"] != nil { page.raw("<p class=\"group\"><a href=\"#websocket\">WebSocket frames</a></p>") }
        page.raw("<p class=\"group\"><a href=\"#schemas\">Schemas</a></p>")
        page.raw("<p><a href=\"openapi.yaml\">openapi.yaml</a> · <a href=\"openapi.json\">openapi.json</a></p></nav><main>")

        page.raw("<h1>"); page.text("\(title) API reference"); page.raw("</h1>")
        page.paragraphs(self.spec["info"]?["description"]?.string)
        if case .object = self.spec["components"]?["securitySchemes"] ?? .null {
            page.raw("<p class=\"note\">Operations marked <span class=\"lock\">bearer</span> need <code>Authorization: Bearer &lt;access_token&gt;</code>.</p>")
        }
        for (tag, operations) in groups {
            page.raw("<h2>"); page.text(tag); page.raw("</h2>")
            if let description = self.spec["tags"]?.array.first(where: { $0["name"]?.string == tag })?["description"]?.string {
                page.paragraphs(description)
            }
            for operation in operations { self.render(operation, into: &page) }
        }
        if let socket = self.spec["x-websocket"] { self.renderWebSocket(socket, into: &page) }
        page.raw("<h2 id=\"schemas\">Schemas</h2>")
        for (name, schema) in self.spec["components"]?["schemas"]?.pairs ?? [] {
            page.raw("<section class=\"schema\" id=\"schema-\(Self.slug(name))\"><h3>"); page.text(name); page.raw("</h3>")
            self.renderSchema(schema, into: &page)
            page.raw("</section>")
        }
        page.raw("</main></body></html>\n")
        return page.out
    }

    /// Operations grouped by their first tag, tags in the order of `tags`.
    func operationsByTag() -> [(String, [SpecOperation])] {
        var order = self.spec["tags"]?.array.compactMap { $0["name"]?.string } ?? []
        var groups: [String: [SpecOperation]] = [:]
        for operation in self.operations {
            let tag = operation.value["tags"]?.array.first?.string ?? "other"
            if !order.contains(tag) { order.append(tag) }
            groups[tag, default: []].append(operation)
        }
        return order.compactMap { tag in groups[tag].map { (tag, $0) } }
    }

    func render(_ operation: SpecOperation, into page: inout HTMLPage) {
        let value = operation.value
        page.raw("<section class=\"op\" id=\"\(Self.anchor(operation))\"><h3><span class=\"m \(operation.method.lowercased())\">")
        page.text(operation.method); page.raw("</span> <code>"); page.text(operation.path); page.raw("</code>")
        let security = value["security"] ?? self.spec["security"]
        if !(security?.array.allSatisfy { $0.pairs.isEmpty } ?? true) { page.raw(" <span class=\"lock\">bearer</span>") }
        page.raw("</h3>")
        if let summary = value["summary"]?.string { page.raw("<p class=\"summary\">"); page.text(summary); page.raw("</p>") }
        page.paragraphs(value["description"]?.string)
        let parameters = ((self.spec["paths"]?[operation.path]?["parameters"]?.array ?? []) + (value["parameters"]?.array ?? [])).map(self.resolve)
        if !parameters.isEmpty {
            page.raw("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>")
            for parameter in parameters {
                page.raw("<tr><td><code>"); page.text(parameter["name"]?.string ?? "")
                page.raw("</code>\(parameter["required"]?.bool == true ? " <em>required</em>" : "")</td><td>")
                page.text(parameter["in"]?.string ?? ""); page.raw("</td><td>")
                self.renderType(parameter["schema"] ?? .null, into: &page)
                page.raw("</td><td>"); page.text(parameter["description"]?.string ?? ""); page.raw("</td></tr>")
            }
            page.raw("</table>")
        }
        if let body = value["requestBody"].map(self.resolve) {
            page.raw("<h4>Request body\(body["required"]?.bool == true ? "" : " (optional)")</h4>")
            page.paragraphs(body["description"]?.string)
            self.renderContent(body["content"], into: &page)
        }
        page.raw("<h4>Responses</h4><table class=\"responses\"><tr><th>status</th><th>description</th><th>body</th></tr>")
        for (status, raw) in value["responses"]?.pairs ?? [] {
            let response = self.resolve(raw)
            page.raw("<tr><td><span class=\"s s\(status.first.map(String.init) ?? "")\">"); page.text(status); page.raw("</span></td><td>")
            page.text(response["description"]?.string ?? "")
            let headers = response["headers"]?.pairs.map(\.0) ?? []
            if !headers.isEmpty { page.raw("<br><small>headers: "); page.text(headers.joined(separator: ", ")); page.raw("</small>") }
            page.raw("</td><td>")
            for (type, media) in response["content"]?.pairs ?? [] {
                page.raw("<code>"); page.text(type); page.raw("</code> ")
                if let schema = media["schema"] { self.renderType(schema, into: &page) }
                page.raw("<br>")
            }
            page.raw("</td></tr>")
        }
        page.raw("</table></section>")
    }

    func renderContent(_ content: SpecValue?, into page: inout HTMLPage) {
        for (type, media) in content?.pairs ?? [] {
            page.raw("<p><code>"); page.text(type); page.raw("</code> ")
            if let schema = media["schema"] { self.renderType(schema, into: &page) }
            page.raw("</p>")
            if let schema = media["schema"], schema["$ref"] == nil, self.resolve(schema)["properties"] != nil {
                self.renderSchema(schema, into: &page)
            }
            if let example = media["example"] {
                page.raw("<pre>"); page.text(example.json); page.raw("</pre>")
            }
        }
    }

    func renderWebSocket(_ socket: SpecValue, into page: inout HTMLPage) {
        page.raw("<h2 id=\"websocket\">WebSocket frames</h2>")
        page.paragraphs(socket["description"]?.string)
        for (title, key) in [("Client frames", "clientFrames"), ("Server frames", "serverFrames")] {
            let frames = socket[key]?.array ?? []
            guard !frames.isEmpty else { continue }
            page.raw("<h3>"); page.text(title); page.raw("</h3><ul>")
            for frame in frames {
                page.raw("<li>"); self.renderType(frame, into: &page); page.raw("</li>")
            }
            page.raw("</ul>")
        }
        let codes = socket["closeCodes"]?.pairs ?? []
        if !codes.isEmpty {
            page.raw("<h3>Close codes</h3><table><tr><th>code</th><th>meaning</th></tr>")
            for (code, meaning) in codes {
                page.raw("<tr><td>"); page.text(code); page.raw("</td><td>"); page.text(meaning.string ?? meaning.json); page.raw("</td></tr>")
            }
            page.raw("</table>")
        }
    }

    /// A schema's properties as a table (objects), or its type.
    func renderSchema(_ raw: SpecValue, into page: inout HTMLPage) {
        let schema = self.resolve(raw)
        page.paragraphs(schema["description"]?.string)
        let properties = schema["properties"]?.pairs ?? []
        guard !properties.isEmpty else {
            page.raw("<p>"); self.renderType(raw, into: &page); page.raw("</p>")
            return
        }
        let required = Set(schema["required"]?.array.compactMap(\.string) ?? [])
        page.raw("<table><tr><th>field</th><th>type</th><th>description</th></tr>")
        for (name, property) in properties {
            page.raw("<tr><td><code>"); page.text(name); page.raw("</code>\(required.contains(name) ? " <em>required</em>" : "")</td><td>")
            self.renderType(property, into: &page)
            page.raw("</td><td>"); page.text(property["description"]?.string ?? ""); page.raw("</td></tr>")
        }
        page.raw("</table>")
        if schema["additionalProperties"]?.bool == false { page.raw("<p class=\"note\">No other fields.</p>") }
        if let examples = schema["examples"]?.array, let first = examples.first {
            page.raw("<pre>"); page.text(first.json); page.raw("</pre>")
        }
    }

    /// A short type label: a link for a named schema, constraints in words.
    func renderType(_ schema: SpecValue, into page: inout HTMLPage) {
        if let ref = schema["$ref"]?.string {
            let name = String(ref.split(separator: "/").last ?? "")
            page.raw("<a href=\"#schema-\(Self.slug(name))\">"); page.text(name); page.raw("</a>")
            return
        }
        for combinator in ["oneOf", "anyOf", "allOf"] {
            if let options = schema[combinator]?.array, !options.isEmpty {
                for (index, option) in options.enumerated() {
                    if index > 0 { page.text(combinator == "allOf" ? " & " : " | ") }
                    self.renderType(option, into: &page)
                }
                return
            }
        }
        var label: [String] = []
        switch schema["type"] {
        case .string(let type)?: label.append(type)
        case .array(let types)?: label.append(types.compactMap(\.string).joined(separator: " | "))
        default: label.append(schema["const"] != nil ? "constant" : "any")
        }
        if let format = schema["format"]?.string { label[0] += " (\(format))" }
        page.text(label.joined())
        if let items = schema["items"] {
            page.text(" of ")
            self.renderType(items, into: &page)
        }
        var notes: [String] = []
        if let values = schema["enum"]?.array { notes.append("one of " + values.map { $0.string ?? $0.json }.joined(separator: ", ")) }
        if let value = schema["const"] { notes.append("= " + (value.string ?? value.json)) }
        for (key, words) in [
            ("minLength", "at least %@ characters"), ("maxLength", "at most %@ characters"), ("minimum", "≥ %@"), ("maximum", "≤ %@"),
            ("minItems", "at least %@ items"), ("maxItems", "at most %@ items"), ("default", "default %@"), ("pattern", "matches %@"),
        ] {
            if let value = schema[key] { notes.append(words.replacingOccurrences(of: "%@", with: value.string ?? value.json)) }
        }
        if !notes.isEmpty { page.raw(" <small>"); page.text(notes.joined(separator: "; ")); page.raw("</small>") }
    }

    static func anchor(_ operation: SpecOperation) -> String {
        operation.value["operationId"]?.string.map(Self.slug) ?? Self.slug("\(operation.method)-\(operation.path)")
    }

    static func slug(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.properties.isAlphabetic || ("0"..."9").contains($0) ? Character($0) : "-" })
    }

    static let css = """
        body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;display:flex}
        nav{position:sticky;top:0;height:100vh;overflow:auto;width:19rem;flex:none;background:#f4f5f8;border-right:1px solid #dde1ea;padding:1rem;box-sizing:border-box;font-size:13px}
        nav ul{list-style:none;margin:0 0 .8rem;padding:0}nav li{margin:.15rem 0}nav a{color:#1d2330;text-decoration:none}
        .brand{font-size:18px;font-weight:600;margin:0 0 1rem}.group{font-weight:600;text-transform:capitalize;margin:.6rem 0 .2rem}
        main{padding:1.5rem 2.5rem;max-width:60rem;min-width:0}h2{border-bottom:2px solid #dde1ea;padding-bottom:.3rem;margin-top:2.5rem;text-transform:capitalize}
        section{border:1px solid #dde1ea;border-radius:6px;padding:.2rem 1rem .8rem;margin:1rem 0}h3{font-size:16px}h4{margin:.8rem 0 .3rem}
        table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;vertical-align:top;border-bottom:1px solid #eceef3;padding:.3rem .4rem}
        code,pre{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:#f4f5f8;padding:.6rem;overflow:auto;white-space:pre-wrap}
        .m{display:inline-block;min-width:3.6em;text-align:center;border-radius:4px;color:#fff;font:600 11px ui-monospace,monospace;padding:2px 4px}
        .get{background:#2f7d4f}.post{background:#2f5fa8}.patch{background:#9a6a14}.put{background:#6b4fa8}.delete{background:#a83a3a}
        .lock{font-size:11px;background:#eceef3;border-radius:4px;padding:1px 5px;color:#555}.summary{font-weight:600}
        .s{font-weight:600}.s2{color:#2f7d4f}.s4{color:#9a6a14}.s5{color:#a83a3a}.note{color:#555;font-size:13px}small{color:#666}
        """
}

/// HTML built with every piece of text escaped.
struct HTMLPage {
    var out = ""

    mutating func raw(_ html: String) { self.out += html }

    mutating func text(_ text: String) {
        for character in text {
            switch character {
            case "&": self.out += "&amp;"
            case "<": self.out += "&lt;"
            case ">": self.out += "&gt;"
            case "\"": self.out += "&quot;"
            case "'": self.out += "&#39;"
            default: self.out.append(character)
            }
        }
    }

    /// Plain text split into paragraphs at blank lines; `code` spans kept.
    mutating func paragraphs(_ text: String?) {
        guard let text, !text.isEmpty else { return }
        for paragraph in text.components(separatedBy: "\n\n") where !paragraph.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            let lines = paragraph.split(separator: "\n", omittingEmptySubsequences: true)
            if lines.allSatisfy({ $0.hasPrefix("- ") }) {
                self.raw("<ul>")
                for line in lines { self.raw("<li>"); self.inline(String(line.dropFirst(2))); self.raw("</li>") }
                self.raw("</ul>")
            } else {
                self.raw("<p>"); self.inline(paragraph); self.raw("</p>")
            }
        }
    }

    /// Text with `code` spans.
    mutating func inline(_ text: String) {
        for (index, piece) in text.split(separator: "`", omittingEmptySubsequences: false).enumerated() {
            if index % 2 == 1 { self.raw("<code>"); self.text(String(piece)); self.raw("</code>") } else { self.text(String(piece)) }
        }
    }
}

import Foundation
