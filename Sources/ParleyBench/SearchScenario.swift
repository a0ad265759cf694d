public import Foundation
import NIOHTTP1

/// Where the search benchmark's corpus lives: seeded straight into
/// PostgreSQL, because a million sends through the gateways would take the
/// better part of an hour (`parley bench search` implements it).
public protocol SearchCorpus: Sendable {
    /// Makes sure a corpus of `messages` messages in `chats` chats exists
    /// (reused when one does), its bodies made of `vocabulary` with word
    /// `i` about as frequent as 1/(i+1) (Zipf). Returns the seconds spent
    /// seeding (0 when reused).
    func prepare(messages: Int, chats: Int, vocabulary: [String]) async throws -> Double
    /// Makes each user a member of `chatsEach` different chats of the corpus.
    func join(userIDs: [String], chatsEach: Int) async throws
}

/// `parley bench search`: `searchers` concurrent users, each a member of
/// `chatsEach` chats of a corpus of `messages` messages, run searches back to
/// back for `duration` (closed loop), over every chat they are in. The mix:
/// half one word, a fifth two words, a fifth a three-letter prefix (drawn
/// uniformly from the vocabulary), a tenth one of the 20 most common words.
public struct SearchScenario: Sendable {
    public var urls: [URL]
    public var corpus: any SearchCorpus
    public var messages = 1_000_000
    public var chats = 1_000
    public var chatsEach = 20
    public var searchers = 8
    public var duration: Duration = .seconds(20)

    public init(urls: [URL], corpus: any SearchCorpus) {
        self.urls = urls
        self.corpus = corpus
    }

    /// The corpus's words: distinct, 3 to 8 letters, some accented (the
    /// search folds accents), the same on every run.
    public static func vocabulary(_ count: Int = 5_000) -> [String] {
        let letters = Array("bcdfghjklmnprstvzaeiouyaeioéèàöü")
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var seen = Set<String>(), words: [String] = []
        while words.count < count {
            let word = String((0..<(3 + next() % 6)).map { _ in letters[next() % letters.count] })
            if seen.insert(word).inserted { words.append(word) }
        }
        return words
    }

    /// The kind and `q` of search number `index`.
    static func query(_ index: Int, vocabulary: [String]) -> (kind: String, q: String) {
        var hash = UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
        func pick(_ range: Int) -> Int {
            hash = (hash ^ (hash >> 31)) &* 0xBF58_476D_1CE4_E5B9
            return Int(hash % UInt64(range))
        }
        switch index % 10 {
        case 0..<5: return ("word", vocabulary[pick(vocabulary.count)])
        case 5, 6: return ("two_words", vocabulary[pick(vocabulary.count)] + " " + vocabulary[pick(vocabulary.count)])
        case 7, 8: return ("prefix", String(vocabulary[pick(vocabulary.count)].prefix(3)))
        default: return ("common_word", vocabulary[pick(20)])
        }
    }

    public func run() async throws -> BenchReport {
        guard !self.urls.isEmpty, self.searchers > 0, self.messages >= self.chats, self.chats >= self.chatsEach, self.chatsEach > 0 else {
            throw BenchError("need a URL, searchers > 0, and messages ≥ chats ≥ chats-each > 0")
        }
        let progress = Progress()
        let vocabulary = Self.vocabulary()
        progress.show("preparing the corpus (\(self.messages) messages; seeding takes minutes the first time)")
        let seedSeconds = try await self.corpus.prepare(messages: self.messages, chats: self.chats, vocabulary: vocabulary)
        let run = String(UUID().uuidString.prefix(8)).lowercased()
        let users = try await parallel(self.searchers, width: 4, urls: [self.urls[0]], progress: progress, label: "registering searchers") { api, index in
            try await api.register(email: "bench-search-\(run)-\(index)@bench.example", name: "searcher \(index)")
        }
        try await self.corpus.join(userIDs: users.map(\.id), chatsEach: self.chatsEach)

        let byKind = Locked([String: Latency]())
        let results = Locked(0)
        let searches = try await closedLoop(clients: self.searchers, urls: self.urls, duration: self.duration, progress: progress, label: "searching") { api, index in
            let (kind, q) = Self.query(index, vocabulary: vocabulary)
            let started = ContinuousClock.now
            let encoded = q.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? q
            let response = try await api.call(.GET, "/v1/search/messages?q=\(encoded)&limit=20", token: users[index % users.count].token)
            let elapsed = ContinuousClock.now - started
            byKind.withLock { $0[kind, default: Latency()].record(elapsed) }
            guard response.status == 200, let found = response.json["results"] as? [Any] else { return false }
            results.withLock { $0 += found.count }
            return true
        }
        let summary = searches.latency.summary
        var report = BenchReport(scenario: "search")
        report.parameters = [
            ("messages", .count(self.messages)), ("chats", .count(self.chats)), ("chats_per_searcher", .count(self.chatsEach)),
            ("searchers", .count(self.searchers)), ("duration_s", .number(self.duration.seconds, "")),
        ]
        report.results = [
            ("searches", .count(Int(summary.count))),
            ("searches_per_s", .rate(searches.rate)),
            ("failed_searches", .count(searches.failed)),
            ("results_per_search", .number(Double(results.withLock { $0 }) / Double(max(1, summary.count)), "")),
            ("seed_s", .number(seedSeconds, "s")),
        ]
        report.latencies = [("search", summary)]
        for kind in ["word", "two_words", "prefix", "common_word"] {
            if let latency = byKind.withLock({ $0[kind] }) { report.latencies.append((kind, latency.summary)) }
        }
        if searches.failed > 0 { report.failures.append("\(searches.failed) searches failed") }
        return report
    }
}
