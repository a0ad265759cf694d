import Foundation
public import Hummingbird

/// Strict JSON request decoding shared by every JSON route: a size limit
/// (413), a JSON content type (415), syntax errors (400 `invalid_json`) and
/// shape errors naming the field (400 `invalid_request`).
extension Request {
    public static let defaultJSONLimit = 64 * 1024

    public func decodeJSON<T: Decodable>(_ type: T.Type, context: some RequestContext, limit: Int = Request.defaultJSONLimit) async throws -> T {
        if let contentType = self.headers[.contentType], !contentType.lowercased().hasPrefix("application/json") {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await self.body.collect(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "too_large", "request body exceeds \(limit) bytes")
        }
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("invalid_json", "request body is empty; a JSON object is expected") }
        let data = Data(buffer.readableBytesView)
        do {
            return try JSONDecoder.parley.decode(T.self, from: data)
        } catch let error as DecodingError {
            // Syntax errors and shape errors get different codes; only on this
            // (failing) path is the body parsed a second time to tell them apart.
            guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil else {
                throw APIError.badRequest("invalid_json", "body is not valid JSON")
            }
            throw APIError.badRequest("invalid_request", Self.describe(error))
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            return context.debugDescription
        case .dataCorrupted(let context):
            return "\(path(context.codingPath)): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "\(path(context.codingPath + [key])): required field is missing"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)): expected \(Self.jsonName(type))"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)): expected \(Self.jsonName(type)), got null"
        @unknown default:
            return "invalid request body"
        }
    }

    static func jsonName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "a boolean"
        case is Int.Type, is Int64.Type, is Int32.Type: return "an integer"
        case is Double.Type: return "a number"
        case is [Any].Type: return "an array"
        default: return "an object"
        }
    }
}

extension JSONDecoder {
    /// Snake-case keys are spelled out in CodingKeys; dates are RFC 3339.
    static var parley: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
