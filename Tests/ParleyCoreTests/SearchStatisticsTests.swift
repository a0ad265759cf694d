import Foundation
import ParleyTestSupport
import PostgresNIO
import Testing

@testable import ParleyCore

/// The lexeme statistics the search plan is chosen from, read from the real
/// PostgreSQL (a broken read would leave every search on the index, silently slow).
@Suite struct SearchStatisticsTests {
    @Test func theMostCommonLexemesAndTheMessageCountAreReadAfterAnalyze() async throws {
        try await withPostgresClient(try TestEnvironment.databaseSettings()) { postgres in
            let database = Database(client: postgres, deadline: .seconds(10), health: DatabaseHealth(logger: TestEnvironment.logger))
            let accounts = AccountStore(database: database, logger: TestEnvironment.logger)
            let chats = ChatStore(database: database, logger: TestEnvironment.logger)
            let tag = UUID().uuidString.prefix(8).lowercased()
            let sender = try #require(try await accounts.createUser(email: "stats-\(tag)@example.test", displayName: "Stats", passwordHash: "x")).id
            let chat = try await chats.createGroup(creator: sender, title: "Stats", memberIDs: [], isPublic: false).id
            _ = try await chats.send(
                batch: (1...40).map { NewMessage(chatID: chat, senderID: sender, clientID: UUID(), body: "Ça va statistiques \($0)") }, deadline: .seconds(10)
            )
            try await postgres.query("ANALYZE messages", logger: TestEnvironment.logger)

            let statistics = SearchStatistics(maxAge: .zero)
            let (frequencies, total) = await statistics.current(database, logger: TestEnvironment.logger)
            #expect(total >= 40, "the table's row estimate")
            #expect(!frequencies.isEmpty, "the column's most common lexemes")
            #expect(frequencies.values.allSatisfy { $0 > 0 && $0 <= 1 }, "shares of all messages")
        }
    }
}
