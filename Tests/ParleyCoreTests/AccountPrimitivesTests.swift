import Foundation
import HiredisNIO
import ParleyCore
import ParleyTestSupport
import Testing

@Suite struct AccountValidationTests {
    @Test(arguments: [
        ("  Alice@Example.COM ", "alice@example.com"),
        ("a.b+tag@sub.example.org", "a.b+tag@sub.example.org"),
        ("x@y.io", "x@y.io"),
    ])
    func acceptsAndNormalizes(raw: String, normalized: String) {
        #expect(AccountValidation.normalizeEmail(raw) == normalized)
    }

    @Test(arguments: ["", "plain", "a@b", "@example.com", "a@@example.com", "a b@example.com", ".a@example.com", "a..b@example.com",
                      "a@-example.com", "a@example.c", "a@example.123", "ü@example.com", "a@exa_mple.com", "\(String(repeating: "a", count: 65))@example.com"])
    func rejects(raw: String) {
        #expect(AccountValidation.normalizeEmail(raw) == nil)
    }

    @Test func displayNames() {
        #expect(AccountValidation.displayName("  Zoë 🚀  ") == "Zoë 🚀")
        #expect(AccountValidation.displayName(String(repeating: "é", count: 64)) != nil)
        #expect(AccountValidation.displayName(String(repeating: "é", count: 65)) == nil)
        #expect(AccountValidation.displayName("   ") == nil)
        #expect(AccountValidation.displayName("a\u{0}b") == nil)
        // length as PostgreSQL counts it: one "e" with 70 combining accents is 71 code points
        #expect(AccountValidation.displayName("e" + String(repeating: "\u{301}", count: 70)) == nil)
        #expect(AccountValidation.displayName("e" + String(repeating: "\u{301}", count: 63)) != nil)
        // bidirectional overrides and isolates could make a name read as another one
        for scalar in [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069] {
            #expect(AccountValidation.displayName("admin\(Character(Unicode.Scalar(scalar)!))nimda") == nil)
        }
        #expect(AccountValidation.label("Team \u{202E}txt.exe", length: 1...128) == nil)
        #expect(AccountValidation.displayName("a\nb") == nil)
        #expect(AccountValidation.defaultDisplayName(email: "jane.doe@example.com") == "jane.doe")
    }

    @Test func passwordsCountCharactersNotBytes() {
        #expect(!AccountValidation.isAcceptablePassword("1234567"))
        #expect(AccountValidation.isAcceptablePassword("12345678"))
        #expect(AccountValidation.isAcceptablePassword(String(repeating: "👩‍👩‍👧", count: 256)))
        #expect(!AccountValidation.isAcceptablePassword(String(repeating: "a", count: 257)))
    }
}

@Suite struct SecretsTests {
    @Test func randomTokensAreLongAndDistinct() {
        let tokens = (0..<100).map { _ in Secrets.randomToken() }
        #expect(Set(tokens).count == 100)
        #expect(tokens.allSatisfy { $0.count == 43 && !$0.contains("=") && !$0.contains("+") && !$0.contains("/") })
        #expect(tokens.allSatisfy { Secrets.base64URLDecode($0)?.count == 32 })
    }

    @Test func constantTimeEquality() {
        #expect(Secrets.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!Secrets.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!Secrets.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
    }

    @Test func derivedKeysDifferByPurpose() throws {
        let secret = Array("a-secret-of-at-least-thirty-two-bytes!!".utf8)
        let sealed = try Secrets.seal("123456", key: Secrets.deriveKey(from: secret, purpose: "one"))
        #expect(try Secrets.open(sealed, key: Secrets.deriveKey(from: secret, purpose: "one")) == "123456")
        #expect(throws: (any Error).self) { try Secrets.open(sealed, key: Secrets.deriveKey(from: secret, purpose: "two")) }
    }

    @Test func uuidV7IsTimeOrderedAndVersioned() {
        let early = UUID.v7(at: Date(timeIntervalSince1970: 1_000_000))
        let late = UUID.v7(at: Date(timeIntervalSince1970: 2_000_000))
        #expect(early.lowercased < late.lowercased)
        #expect(Array(early.lowercased)[14] == "7")
        #expect("89ab".contains(Array(early.lowercased)[19]))
    }

    @Test func codesAreSixDigits() {
        let codes = (0..<1000).map { _ in OneTimeCodes.generateCode() }
        #expect(codes.allSatisfy { OneTimeCodes.isWellFormed($0) })
        #expect(Set(codes).count > 990)
        #expect(!OneTimeCodes.isWellFormed("12345"))
        #expect(!OneTimeCodes.isWellFormed("12345a"))
        #expect(!OneTimeCodes.isWellFormed("１２３４５６"))
    }
}

@Suite struct PasswordHasherTests {
    @Test func argon2idWithAtLeastOWASPCost() async throws {
        let hasher = PasswordHasher()
        let hash = try await hasher.hash("correct horse battery")
        #expect(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        #expect(try await hasher.verify("correct horse battery", against: hash))
        #expect(try await !hasher.verify("correct horse batterY", against: hash))
        #expect(try await !hasher.verify("correct horse battery", against: nil))
        // bytes after a NUL count: nothing is truncated
        let withNul = try await hasher.hash("abc\u{0}defgh")
        #expect(try await !hasher.verify("abc", against: withNul))
        #expect(try await hasher.verify("abc\u{0}defgh", against: withNul))
    }
}

@Suite struct RateLimiterTests {
    let limiter: RateLimiter
    let key = "test:\(UUID().uuidString)"

    init() throws {
        self.limiter = RateLimiter(redis: RedisClient(configuration: try TestEnvironment.redisConfiguration(), logger: TestEnvironment.logger))
    }

    @Test func everyRuleOfASubjectHolds() async throws {
        // a window long enough that three calls fit in it on a loaded machine
        let rules = [RateLimitRule(2, per: .seconds(10)), RateLimitRule(3, per: .seconds(60))]
        #expect(try await self.limiter.hit(self.key, rules) == .allowed)
        #expect(try await self.limiter.hit(self.key, rules) == .allowed)
        guard case .limited(let retry) = try await self.limiter.hit(self.key, rules) else {
            Issue.record("third hit within 10 s must be limited")
            return
        }
        #expect((1...10).contains(retry))
        try await Task.sleep(for: .seconds(retry))
        #expect(try await self.limiter.hit(self.key, rules) == .allowed)
        // the hourly rule now binds: 3 per 60 s, with a retry-after close to a minute
        guard case .limited(let longRetry) = try await self.limiter.hit(self.key, rules) else {
            Issue.record("fourth hit within 60 s must be limited")
            return
        }
        #expect(longRetry > 30, "the 60 s rule must be the binding one")
    }

    @Test func aReservedSlotGivenBackDoesNotCount() async throws {
        let rules = [RateLimitRule(2, per: .seconds(60))]
        // successful attempts give their slot back: any number of them pass
        for _ in 0..<5 {
            let token = UUID().uuidString
            #expect(try await self.limiter.reserve(self.key, rules, token: token) == .allowed)
            try await self.limiter.giveBack(self.key, token: token)
        }
        // failures keep theirs: the third is refused
        #expect(try await self.limiter.reserve(self.key, rules, token: UUID().uuidString) == .allowed)
        #expect(try await self.limiter.reserve(self.key, rules, token: UUID().uuidString) == .allowed)
        #expect(try await self.limiter.reserve(self.key, rules, token: UUID().uuidString) != .allowed)
    }

    @Test func concurrentHitsNeverExceedTheLimit() async throws {
        let rules = [RateLimitRule(10, per: .seconds(60))]
        let limiter = self.limiter
        let key = self.key
        let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { try await limiter.hit(key, rules) == .allowed } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(allowed == 10)
    }
}
