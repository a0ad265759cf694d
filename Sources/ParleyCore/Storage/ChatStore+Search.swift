public import Foundation
import PostgresNIO

/// What `ChatStore.search` looks for (PROTOCOL.md 1.1 "Search", and the
/// `mentions=me` filter): at least one of `words` and `mentionsViewer`.
public struct MessageSearch: Sendable, Hashable {
    /// The query's words, as the caller typed them (split on whitespace);
    /// each matches as a prefix, case- and accent-insensitively.
    public var words: [String]
    /// One chat, or every chat of the viewer.
    public var chatID: UUID?
    /// Only messages that mention the viewer.
    public var mentionsViewer: Bool

    public init(words: [String], chatID: UUID? = nil, mentionsViewer: Bool = false) {
        self.words = words
        self.chatID = chatID
        self.mentionsViewer = mentionsViewer
    }

    /// Text as the store's `unaccent` and `simple` parser see it (lower case,
    /// accents removed): for looking words up among the lexemes, and for
    /// finding them in a body to highlight.
    public static func fold(_ text: String) -> String {
        text.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil).lowercased()
    }

    /// The PostgreSQL `tsquery` text: every word quoted (the text search
    /// parser splits it as it split the bodies) and matched as a prefix, all
    /// of them required. Nil without words.
    public var tsquery: String? {
        guard !self.words.isEmpty else { return nil }
        return self.words.map { word in
            var quoted = "'"
            for character in word {
                if character == "'" || character == "\\" { quoted.append("\\") }
                quoted.append(character)
            }
            return quoted + "':*"
        }.joined(separator: " & ")
    }
}

/// Where a page of search results ended: results are ordered by rank, then
/// newest first, then by chat and seq (all descending).
public struct SearchCursor: Sendable, Hashable {
    public var rank: Float
    public var createdAt: Date
    public var chatID: UUID
    public var seq: Int64

    public init(rank: Float, createdAt: Date, chatID: UUID, seq: Int64) {
        self.rank = rank
        self.createdAt = createdAt
        self.chatID = chatID
        self.seq = seq
    }
}

public struct SearchHit: Sendable, Hashable {
    public var message: MessageRecord
    /// `ts_rank` of the match (0 without words): part of the cursor.
    public var rank: Float

    public var cursor: SearchCursor {
        SearchCursor(rank: self.rank, createdAt: self.message.createdAt, chatID: self.message.chatID, seq: self.message.seq)
    }
}

extension ChatStore {
    /// The viewer's messages that match `search`: only in chats the viewer
    /// is a member of (all of their history shows), never deleted ones; best
    /// match first, newer first among equals. One query for the page (plus
    /// one for attachments, when any result has some); the GIN indexes of
    /// migration 007 find the matches, except for words so common that
    /// testing the caller's own messages is cheaper (`SearchPlan`; one more
    /// query then, for the caller's message count). `plan` overrides that
    /// choice (tests). Results carry no reactions.
    public func search(
        _ search: MessageSearch, viewer: UUID, limit: Int, after cursor: SearchCursor?, plan forced: SearchPlan? = nil
    ) async throws -> (hits: [SearchHit], hasMore: Bool) {
        if let chatID = search.chatID, try await self.role(of: viewer, in: chatID) == nil { throw ChatError.chatNotFound }
        var plan = forced ?? .index
        if forced == nil, search.tsquery != nil {
            let statistics = await self.searchStatistics.current(self.database, logger: self.logger)
            let words = search.words.flatMap { MessageSearch.fold($0).split { !$0.isLetter && !$0.isNumber }.map(String.init) }
            plan = try await SearchPlan.choose(words: words, frequencies: statistics.frequencies, totalMessages: statistics.totalMessages) {
                try await self.searchScope(viewer: viewer, chatID: search.chatID)
            }
        }
        var query: PostgresQuery
        // the tsquery goes in as a bound value, so the planner sees it and
        // estimates how many messages match from the column's statistics
        if let tsquery = search.tsquery {
            // $1 is the tsquery; with `scan`, the same test in a form no index answers (the caller's chats lead)
            let match = "m.search @@ to_tsquery('simple'::regconfig, parley_unaccent($1))"
            var binds = PostgresBindings()
            binds.append(tsquery)
            query = PostgresQuery(
                unsafeSQL: """
                    SELECT \(Self.messageColumns),
                        EXISTS (SELECT 1 FROM message_attachments ma WHERE ma.chat_id = m.chat_id AND ma.seq = m.seq) AS has_attachments,
                        ts_rank(m.search, to_tsquery('simple'::regconfig, parley_unaccent($1))) AS rank
                    FROM messages m
                    WHERE \(plan == .scan ? "coalesce(\(match), false)" : match) AND m.deleted_at IS NULL
                    """,
                binds: binds
            )
        } else {
            query = """
                SELECT \(unescaped: Self.messageColumns),
                    EXISTS (SELECT 1 FROM message_attachments ma WHERE ma.chat_id = m.chat_id AND ma.seq = m.seq) AS has_attachments,
                    0::real AS rank
                FROM messages m
                WHERE m.deleted_at IS NULL
                """
        }
        if let chatID = search.chatID {
            query.sql += " AND m.chat_id = $\(query.binds.count + 1)"
            query.binds.append(chatID)
        } else {
            query.sql += " AND m.chat_id = ANY(ARRAY(SELECT cm.chat_id FROM chat_members cm WHERE cm.user_id = $\(query.binds.count + 1)))"
            query.binds.append(viewer)
        }
        if search.mentionsViewer {
            // `<> '{}'`: the partial index holds only messages with mentions
            query.sql += " AND m.mentions <> '{}' AND m.mentions @> ARRAY[$\(query.binds.count + 1)::uuid]"
            query.binds.append(viewer)
        }
        if let cursor {
            let rank = search.tsquery == nil ? "0::real" : "ts_rank(m.search, to_tsquery('simple'::regconfig, parley_unaccent($1)))"
            let first = query.binds.count + 1
            query.sql += " AND (\(rank), m.created_at, m.chat_id, m.seq) < ($\(first)::real, $\(first + 1), $\(first + 2), $\(first + 3))"
            query.binds.append(cursor.rank)
            query.binds.append(cursor.createdAt)
            query.binds.append(cursor.chatID)
            query.binds.append(cursor.seq)
        }
        query.sql += " ORDER BY rank DESC, m.created_at DESC, m.chat_id DESC, m.seq DESC LIMIT $\(query.binds.count + 1)"
        query.binds.append(limit + 1)

        var hits: [SearchHit] = []
        var withAttachments: [(UUID, Int64)] = []
        for try await row in try await self.database.query(query, logger: self.logger) {
            let (id, chat, seq, sender, clientID, body, reply, created, edited, deleted, mentions, hasAttachments, rank) = try row.decode(
                (UUID, UUID, Int64, UUID, UUID, String?, Int64?, Date, Date?, Date?, [UUID], Bool, Float).self
            )
            let message = MessageRecord(
                id: id, chatID: chat, seq: seq, senderID: sender, clientID: clientID, body: body, attachments: [], replyToSeq: reply,
                createdAt: created, editedAt: edited, deletedAt: deleted, mentions: mentions
            )
            hits.append(SearchHit(message: message, rank: rank))
            if hasAttachments { withAttachments.append((chat, seq)) }
        }
        let hasMore = hits.count > limit
        hits = Array(hits.prefix(limit))
        let attachments = try await self.attachments(of: withAttachments)
        for index in hits.indices {
            hits[index].message.attachments = attachments[Key(hits[index].message.chatID, hits[index].message.seq)] ?? []
        }
        return (hits, hasMore)
    }

    /// How many messages the viewer can search (in one chat, or in all of theirs).
    func searchScope(viewer: UUID, chatID: UUID?) async throws -> Double {
        var query: PostgresQuery = "SELECT coalesce(sum(c.last_seq), 0)::float8 FROM chat_members cm JOIN chats c ON c.id = cm.chat_id WHERE cm.user_id = \(viewer)"
        if let chatID {
            query.sql += " AND cm.chat_id = $2"
            query.binds.append(chatID)
        }
        return try await self.database.query(query, logger: self.logger).decode(Double.self).elements.first ?? 0
    }
}
