import ArgumentParser
import Foundation
import Logging
import ParleyBench
import ParleyCore
import PostgresNIO

struct SearchBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Concurrent message searches over a large corpus (seeded into PostgreSQL once, then reused).",
        discussion: "Unlike the other scenarios this one also talks to PostgreSQL (--database-url or PARLEY_DATABASE_URL): it writes the corpus there directly, since a million sends through the gateways would take the better part of an hour. The gateways need PARLEY_SEARCHES_PER_SECOND raised above what the searchers ask for."
    )

    @OptionGroup var options: BenchOptions
    @Option(name: .customLong("database-url"), help: "PostgreSQL URL of the gateways' database (env PARLEY_DATABASE_URL).") var databaseURL: String?
    @Option(help: "Messages in the corpus.") var messages = 1_000_000
    @Option(help: "Chats in the corpus.") var chats = 1_000
    @Option(name: .customLong("chats-each"), help: "Chats each searcher is a member of.") var chatsEach = 20
    @Option(help: "Concurrent searchers.") var searchers = 8
    @Option(help: "Seconds of searching.") var duration = 20.0

    func run() async throws {
        try await runCommand {
            var values = ProcessInfo.processInfo.environment
            if let url = self.databaseURL { values[DatabaseSettings.variable] = url }
            var settings = try DatabaseSettings.load(SettingsReader(values))
            settings.maxConnections = 2
            let client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: Logger(label: "parley.bench.search"))
            var scenario = SearchScenario(urls: try self.options.gatewayURLs(), corpus: PostgresSearchCorpus(client: client))
            scenario.messages = self.messages
            scenario.chats = self.chats
            scenario.chatsEach = self.chatsEach
            scenario.searchers = self.searchers
            scenario.duration = .seconds(self.duration)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                try self.options.finish(try await scenario.run())
            }
        }
    }
}

/// The corpus in the gateways' PostgreSQL: chats titled
/// `bench search corpus M/C #i` (M messages in C chats), one sender, bodies
/// of 4 to 20 words drawn with a Zipf-like (log-uniform) rank.
struct PostgresSearchCorpus: SearchCorpus {
    let client: PostgresClient
    let logger = Logger(label: "parley.bench.search")
    static let anyCorpus = "bench search corpus %"

    func title(_ messages: Int, _ chats: Int) -> String { "bench search corpus \(messages)/\(chats) #" }

    func prepare(messages: Int, chats: Int, vocabulary: [String]) async throws -> Double {
        let prefix = self.title(messages, chats)
        let pattern = prefix + "%"
        let rows = try await self.client.query("SELECT count(*), coalesce(sum(last_seq), 0)::bigint FROM chats WHERE title LIKE \(pattern)", logger: self.logger)
        for try await (count, total) in rows.decode((Int64, Int64).self) where count == chats && total == messages {
            return 0
        }
        let started = ContinuousClock.now
        let perChat = messages / chats
        let sender = UUID()
        let senderEmail = "bench-search-corpus-\(sender.uuidString.prefix(8).lowercased())@bench.example"
        // one session: the temporary tables live in it
        try await self.client.withConnection { connection in
            // one corpus at a time (its messages go with its chats)
            _ = try await connection.query("DELETE FROM chats WHERE title LIKE \(Self.anyCorpus)", logger: self.logger)
            _ = try await connection.query("INSERT INTO users (id, email, display_name) VALUES (\(sender), \(senderEmail), 'search corpus')", logger: self.logger)
            _ = try await connection.query(
                """
                INSERT INTO chats (id, kind, title, last_seq, members_count)
                SELECT gen_random_uuid(), 'group', \(prefix) || lpad(i::text, 6, '0'), \(perChat), 0 FROM generate_series(1, \(chats)) i
                """,
                logger: self.logger
            )
            _ = try await connection.query(
                "CREATE TEMP TABLE corpus_words AS SELECT (o - 1)::int AS i, w FROM unnest(\(vocabulary)::text[]) WITH ORDINALITY AS v(w, o)",
                logger: self.logger
            )
            let count = vocabulary.count
            // every message's words, ranked log-uniformly: word i about as often as 1/(i+1)
            _ = try await connection.query(
                """
                INSERT INTO messages (chat_id, seq, id, sender_id, client_id, body, created_at)
                SELECT c.id, b.m % \(perChat) + 1, gen_random_uuid(), \(sender), gen_random_uuid(), b.body,
                       now() - interval '1 second' * (\(messages) - b.m)
                FROM (
                    SELECT p.m, string_agg(w.w, ' ' ORDER BY p.g) AS body FROM (
                        SELECT m, g, floor(power(\(count)::float8, random()))::int - 1 AS wi
                        FROM generate_series(0, \(perChat * chats) - 1) m, generate_series(1, 4 + m % 17) g
                    ) p JOIN corpus_words w ON w.i = p.wi GROUP BY p.m
                ) b
                JOIN (SELECT id, row_number() OVER (ORDER BY title) - 1 AS n FROM chats WHERE title LIKE \(pattern)) c ON c.n = b.m / \(perChat)
                """,
                logger: self.logger
            )
            _ = try await connection.query("DROP TABLE corpus_words", logger: self.logger)
            _ = try await connection.query("ANALYZE messages", logger: self.logger)
        }
        let elapsed = (ContinuousClock.now - started).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }

    func join(userIDs: [String], chatsEach: Int) async throws {
        let ids = userIDs.compactMap(UUID.init(uuidString:))
        let pattern = Self.anyCorpus
        // user k joins chats k·chatsEach … (k+1)·chatsEach − 1 of the corpus, wrapping around
        _ = try await self.client.query(
            """
            WITH c AS (SELECT id, row_number() OVER (ORDER BY title) - 1 AS n, count(*) OVER () AS total FROM chats WHERE title LIKE \(pattern))
            INSERT INTO chat_members (chat_id, user_id)
            SELECT c.id, u.id FROM unnest(\(ids)::uuid[]) WITH ORDINALITY AS u(id, k), c
            WHERE ((c.n - (u.k - 1) * \(chatsEach)) % c.total + c.total) % c.total < \(chatsEach)
            ON CONFLICT DO NOTHING
            """,
            logger: self.logger
        )
    }
}
