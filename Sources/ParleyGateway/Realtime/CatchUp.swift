import Foundation
import ParleyCore

/// How a socket catches up on missed messages without holding them all in
/// memory: chats missing more than `resyncAbove` get `resync` instead (the
/// client pages through REST history); the rest is read in pages of at most
/// `pageSize` messages — small chats share a page, a large one is split.
/// Seqs are gapless, so a range's size is known before anything is read. Pure.
struct CatchUpPlan: Equatable {
    var resync: [SeqRange] = []
    var pages: [[SeqRange]] = []

    init(_ ranges: [SeqRange], pageSize: Int, resyncAbove: Int) {
        precondition(pageSize > 0)
        var page: [SeqRange] = []
        var pageCount: Int64 = 0
        func flush() {
            if !page.isEmpty { self.pages.append(page) }
            page = []
            pageCount = 0
        }
        for range in ranges.sorted(by: { $0.chatID.uuidString < $1.chatID.uuidString }) where range.count > 0 {
            if range.count > Int64(resyncAbove) {
                self.resync.append(range)
                continue
            }
            var rest = range
            while rest.count > 0 {
                if pageCount == Int64(pageSize) { flush() }
                let take = min(rest.count, Int64(pageSize) - pageCount)
                page.append(SeqRange(chatID: rest.chatID, after: rest.after, through: rest.after + take))
                pageCount += take
                rest.after += take
            }
        }
        flush()
    }
}
