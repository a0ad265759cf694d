import ParleyCore
import Testing

/// Choosing between the GIN index and testing the caller's messages (pure).
@Suite struct SearchPlanTests {
    let frequencies = ["the": 0.6, "then": 0.05, "there": 0.05, "rare": 0.0001]

    func plan(_ words: [String], scope: Double, total: Double = 1_000_000) async -> SearchPlan {
        await SearchPlan.choose(words: words, frequencies: self.frequencies, totalMessages: total) { scope }
    }

    @Test func aWordInMoreMessagesThanFiveTimesTheCallersGoesThroughTheirChats() async {
        #expect(await self.plan(["the"], scope: 20_000) == .scan, "600,000 matches against 20,000 to test")
        #expect(await self.plan(["the"], scope: 200_000) == .index, "a caller who sees most messages is better served by the index")
        // a prefix counts every common lexeme it starts
        #expect(await self.plan(["ther"], scope: 20_000) == .index, "50,000 < 5 × 20,000")
        #expect(await self.plan(["th"], scope: 20_000) == .scan)
    }

    @Test func theRarestWordDecidesAndUnknownWordsUseTheIndex() async {
        #expect(await self.plan(["the", "rare"], scope: 1_000) == .index, "every word must match: at most 100 matches")
        #expect(await self.plan(["unlisted"], scope: 10) == .index)
        #expect(await self.plan([], scope: 10) == .index)
        #expect(await self.plan(["the"], scope: 10, total: 0) == .index, "no statistics yet")
    }

    @Test func theScopeIsOnlyReadWhenAWordIsCommon() async {
        let plan = await SearchPlan.choose(words: ["rare"], frequencies: self.frequencies, totalMessages: 1_000_000) {
            Issue.record("the scope was read for a rare word")
            return 0
        }
        #expect(plan == .index)
    }

    @Test func wordsAreFoldedAsTheStoreFoldsThem() {
        #expect(MessageSearch.fold("CRÈME") == "creme")
        #expect(MessageSearch.fold("Ωmega") == "ωmega")
    }
}
