import Foundation

/// Client addresses as per-address limits count them. Pure.
public enum ClientAddress {
    /// An IPv4 address as it is; an IPv6 address by its /64 network (one
    /// subscriber usually holds a whole /64, so counting single IPv6
    /// addresses would give each attacker 2^64 budgets); an IPv4-mapped IPv6
    /// address as the IPv4 address; anything else as it is.
    public static func limitKey(_ address: String) -> String {
        var v6 = in6_addr()
        guard address.contains(":"), inet_pton(AF_INET6, address, &v6) == 1 else { return address }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }
}
