import Foundation
import ParleyChat
import ParleyCore
import Testing

/// The search highlight and query building (PROTOCOL.md 1.1 "Search"), pure.
@Suite struct SearchHighlightTests {
    func mark(_ body: String, _ query: String) -> String {
        SearchHighlight.highlight(body, query: SearchHighlight.queryWords(query))
    }

    @Test func wordsThatStartWithAQueryWordAreMarkedCaseAndAccentInsensitively() {
        #expect(self.mark("Crème brûlée tonight", "creme BRU") == "<mark>Crème</mark> <mark>brûlée</mark> tonight")
        #expect(self.mark("Über uber ÜBERALL", "über") == "<mark>Über</mark> <mark>uber</mark> <mark>ÜBERALL</mark>")
        #expect(self.mark("meet at 10:30", "10") == "meet at <mark>10</mark>:30")
        #expect(self.mark("東京タワー 行こう", "東京") == "<mark>東京タワー</mark> 行こう")
        // a word must start with the query word, not merely contain it
        #expect(self.mark("scream cream", "cream") == "scream <mark>cream</mark>")
        #expect(self.mark("nothing", "else") == "nothing")
        #expect(self.mark("", "x") == "")
    }

    @Test func everythingElseIsEscaped() {
        #expect(self.mark(#"<script>alert("x")</script> & 'co'"#, "alert co") ==
            #"&lt;script&gt;<mark>alert</mark>(&quot;x&quot;)&lt;/script&gt; &amp; &#39;<mark>co</mark>&#39;"#)
        // markup in the query is a word like any other, never markup in the answer
        #expect(self.mark("a <mark> b", "<mark>") == "a &lt;<mark>mark</mark>&gt; b")
        #expect(self.mark("x < y", "") == "x &lt; y")
    }

    @Test func queryWordsAreFoldedOnceEach() {
        #expect(SearchHighlight.queryWords("Crème  creme, CREMEUX") == ["cremeux", "creme"])
        #expect(SearchHighlight.queryWords("  ... ").isEmpty)
    }

    @Test func theTSQueryQuotesEveryWordAsAPrefixAndEscapesQuotes() {
        #expect(MessageSearch(words: []).tsquery == nil)
        #expect(MessageSearch(words: ["crème", "10:30"]).tsquery == "'crème':* & '10:30':*")
        #expect(MessageSearch(words: [#"it's"#, #"back\slash"#, "a&b|!c"]).tsquery == #"'it\'s':* & 'back\\slash':* & 'a&b|!c':*"#)
    }

    @Test func mentionsAreAtMostFiftyIDsEachOnce() throws {
        let a = UUID(), b = UUID()
        #expect(try MessageValidation.mentions([a.uuidString, b.uuidString.lowercased(), a.uuidString.lowercased()]).get() == [a, b])
        #expect(try MessageValidation.mentions([]).get() == [])
        #expect(throws: MessageValidation.InvalidMentions.self) { try MessageValidation.mentions(["not an id"]).get() }
        #expect(throws: MessageValidation.InvalidMentions.self) { try MessageValidation.mentions(Array(repeating: a.uuidString, count: 51)).get() }
        #expect(try MessageValidation.mentions(Array(repeating: a.uuidString, count: 50)).get() == [a])
    }
}
