import ParleyCore
import Testing

@Suite struct MessageValidationTests {
    @Test func bodyLimits() throws {
        #expect(try MessageValidation.body("hi", hasAttachments: false).get() == "hi")
        #expect(try MessageValidation.body(String(repeating: "a", count: 4000), hasAttachments: false).get() != nil)
        #expect((try? MessageValidation.body(String(repeating: "a", count: 4001), hasAttachments: false).get()) == nil)
        // 4,000 characters but more than 16 KiB of UTF-8
        #expect((try? MessageValidation.body(String(repeating: "😀", count: 4097), hasAttachments: false).get()) == nil)
        #expect((try? MessageValidation.body(String(repeating: "👩‍👩‍👧", count: 1000), hasAttachments: false).get()) == nil)
        #expect((try? MessageValidation.body("", hasAttachments: false).get()) == nil)
        #expect((try? MessageValidation.body(nil, hasAttachments: false).get()) == nil)
        #expect(try MessageValidation.body(nil, hasAttachments: true).get() == nil)
        #expect(try MessageValidation.body("", hasAttachments: true).get() == nil)
        #expect(try MessageValidation.body("tabs\tand\nlines\r\n", hasAttachments: false).get() != nil)
        #expect((try? MessageValidation.body("nul\u{0}", hasAttachments: false).get()) == nil)
        #expect((try? MessageValidation.body("esc\u{1B}[31m", hasAttachments: false).get()) == nil)
    }
}

@Suite struct ReactionEmojiTests {
    @Test(arguments: ["👍", "❤️", "🎉", "👩‍👩‍👧", "🇫🇷", "👍🏽", "©"])
    func emojiAreAccepted(emoji: String) {
        #expect(MessageValidation.emoji(emoji) == emoji)
    }

    @Test(arguments: [
        "", "a", "1", "#", "*", " ", "👍👍", "👍 ", "ok", "é", "\u{0}", "\u{85}", "\u{2028}",
        // one grapheme cluster, but over 32 bytes
        String(repeating: "👩‍", count: 8) + "👧",
    ])
    func anythingElseIsRefused(text: String) {
        #expect(MessageValidation.emoji(text) == nil)
    }
}

@Suite struct AttachmentTypesTests {
    @Test func magicBytes() {
        #expect(AttachmentTypes.matches("image/png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0]))
        #expect(!AttachmentTypes.matches("image/png", [0x89, 0x50, 0x4E]))
        #expect(AttachmentTypes.matches("image/jpeg", [0xFF, 0xD8, 0xFF, 0xE0]))
        #expect(AttachmentTypes.matches("image/gif", Array("GIF89a....".utf8)))
        #expect(AttachmentTypes.matches("image/webp", Array("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8)))
        #expect(!AttachmentTypes.matches("image/webp", Array("RIFF\u{0}\u{0}\u{0}\u{0}WAVEfmt ".utf8)))
        #expect(AttachmentTypes.matches("application/pdf", Array("%PDF-1.7".utf8)))
        #expect(AttachmentTypes.matches("text/plain", Array("héllo\n".utf8)))
        #expect(!AttachmentTypes.matches("text/plain", [0xC3, 0x28]))
        #expect(!AttachmentTypes.matches("text/plain", [0x41, 0x00]))
        #expect(!AttachmentTypes.matches("image/svg+xml", Array("<svg/>".utf8)))
        #expect(AttachmentTypes.mediaType("Text/Plain; charset=utf-8") == "text/plain")
    }
}
