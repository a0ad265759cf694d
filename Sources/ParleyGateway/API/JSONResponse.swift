import Foundation
import ParleyChat
public import HTTPTypes
public import Hummingbird

extension Response {
    /// `value` as `application/json`.
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONEncoder.parley.encode(value)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    public static func noContent() -> Response {
        Response(status: .noContent)
    }
}
