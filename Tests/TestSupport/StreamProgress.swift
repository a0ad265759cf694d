public import HiredisNIO

/// What tests wait for on a Redis stream instead of sleeping: that a
/// consumer group has taken everything and acknowledged it.
extension RedisClient {
    /// True once `group` has read every entry of `stream` and acknowledged
    /// each (XINFO GROUPS: `lag` 0 and `pending` 0).
    public func groupIsCaughtUp(_ stream: String, group: String) async throws -> Bool {
        let groups = try await self.send("XINFO", "GROUPS", .string(stream)).array ?? []
        for entry in groups {
            // RESP2: a flat list of names and values
            let items = entry.array ?? []
            var fields: [String: RedisValue] = [:]
            for index in stride(from: 0, to: items.count - 1, by: 2) {
                if let name = items[index].string { fields[name] = items[index + 1] }
            }
            guard fields["name"]?.string == group else { continue }
            guard fields["pending"]?.int == 0 else { return false }
            if let lag = fields["lag"]?.int { return lag == 0 }
            // Redis cannot always count the lag (entries deleted or trimmed): compare ids
            let newest = try await self.xrange(stream, count: 1, reverse: true).first?.id
            return newest == nil || fields["last-delivered-id"]?.string == newest
        }
        return false
    }

    /// True once the entry of `stream` whose `field` is `value` was acknowledged
    /// by `group`: no member of the group will handle it again.
    public func entryIsAcknowledged(_ stream: String, group: String, field: String, value: String) async throws -> Bool {
        guard let entry = try await self.xrange(stream, reverse: true).first(where: { $0[field] == value }) else { return false }
        return try await self.xpending(stream, group: group, start: entry.id, end: entry.id, count: 1).isEmpty
    }
}
