public import Foundation
import Logging
import PostgresNIO
import Synchronization

/// How a search finds its matches, chosen per query (pure; see `SearchStatistics`).
///
/// The GIN index answers a query with every match in the whole table before
/// the caller's chats are applied: a few milliseconds for a distinctive word,
/// but over 100 ms for a word in half of a million messages. For such a
/// query it is cheaper to read the caller's messages (by chat) and test each
/// one. `dense` says which side of that line a query falls on.
public enum SearchPlan: Sendable, Hashable {
    /// Through the GIN index on `messages.search`.
    case index
    /// Through the caller's chats, every message tested.
    case scan

    /// The share of all messages that hold a lexeme starting with `word`,
    /// from the table's most common lexemes (a lower bound: rarer ones are
    /// not listed, and count as nothing).
    static func share(of word: String, in frequencies: [String: Double]) -> Double {
        min(1, frequencies.reduce(0) { $1.key.hasPrefix(word) ? $0 + $1.value : $0 })
    }

    /// `scan` when the index would hand over more than `ratio` times as many
    /// matches as the caller has messages to test; every word must match, so
    /// the rarest word bounds the matches. Below `floor` matches the index is
    /// always quick, and `scope` (a query) is not asked.
    public static func choose(
        words: [String], frequencies: [String: Double], totalMessages: Double, scope: () async throws -> Double,
        ratio: Double = 5, floor: Double = 10_000
    ) async rethrows -> SearchPlan {
        guard !words.isEmpty, totalMessages > 0 else { return .index }
        let matches = words.map { Self.share(of: $0, in: frequencies) }.min()! * totalMessages
        guard matches >= floor else { return .index }
        return matches > ratio * (try await scope()) ? .scan : .index
    }
}

/// The most common lexemes of `messages.search` and their frequencies, as
/// PostgreSQL's statistics have them (`ANALYZE`, which autovacuum runs),
/// read at most every five minutes and shared by every search of the
/// process. Empty (every search uses the index) when they cannot be read.
public final class SearchStatistics: Sendable {
    struct Snapshot {
        var frequencies: [String: Double] = [:]
        var totalMessages: Double = 0
        var readAt: ContinuousClock.Instant?
    }

    private let snapshot = Mutex(Snapshot())
    let maxAge: Duration

    public init(maxAge: Duration = .seconds(300)) {
        self.maxAge = maxAge
    }

    func current(_ database: Database, logger: Logger) async -> (frequencies: [String: Double], totalMessages: Double) {
        let now = ContinuousClock.now
        let cached = self.snapshot.withLock { $0 }
        if let readAt = cached.readAt, now - readAt < self.maxAge { return (cached.frequencies, cached.totalMessages) }
        // one reader at a time; the others go on with what is there
        self.snapshot.withLock { $0.readAt = now }
        var fresh = Snapshot(readAt: now)
        do {
            for try await (elements, frequencies, tuples) in try await database.query(
                """
                SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples::float8
                FROM pg_class c LEFT JOIN pg_stats s ON s.tablename = c.relname AND s.attname = 'search' AND s.schemaname = current_schema()
                WHERE c.oid = 'messages'::regclass
                """,
                logger: logger
            ).decode(([String]?, [Float]?, Double).self) {
                fresh.totalMessages = max(0, tuples)
                // the frequencies array has the elements' then three summary values
                if let elements, let frequencies, frequencies.count >= elements.count {
                    for (element, frequency) in zip(elements, frequencies) { fresh.frequencies[element] = Double(frequency) }
                }
            }
        } catch {
            // searches still work (through the index); say so, since common words get slow
            logger.warning("search statistics not read", metadata: ["error": "\(String(reflecting: error))"])
        }
        self.snapshot.withLock { $0 = fresh }
        return (fresh.frequencies, fresh.totalMessages)
    }
}
