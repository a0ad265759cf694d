import CCrack
import Foundation
import Synchronization

/// Refuses common and guessable passwords with Debian's cracklib: dictionary
/// words and simple variations of them ("Password1", "hunter22"), keyboard
/// runs and other too simple ones (OWASP ASVS 6.2.4). The dictionary is
/// cracklib-runtime's (`/var/cache/cracklib/cracklib_dict`).
public struct PasswordStrength: Sendable {
    public static let defaultDictionary = "/var/cache/cracklib/cracklib_dict"

    /// The dictionary's path prefix (the files are `<prefix>.pwd`, `.pwi`, `.hwm`).
    public let dictionary: String

    /// cracklib keeps the open dictionary in static variables: one check at a time.
    private static let lock = Mutex(())

    public init(dictionary: String = Self.defaultDictionary) {
        self.dictionary = dictionary
    }

    /// Fails unless the dictionary can be read: checked at start, so that a
    /// missing dictionary is a configuration error (cracklib itself exits the
    /// process when it cannot open its dictionary).
    public func validate() throws(ConfigurationError) {
        guard self.dictionaryIsReadable else {
            throw ConfigurationError("PARLEY_CRACKLIB_DICT", "cannot read the cracklib dictionary \(self.dictionary).pwd (install Debian's cracklib-runtime)")
        }
    }

    var dictionaryIsReadable: Bool {
        [".pwd", ".pwi", ".hwm"].allSatisfy { FileManager.default.isReadableFile(atPath: self.dictionary + $0) }
    }

    /// The dictionary went missing after start.
    public struct Unavailable: Error {}

    /// Why `password` is too weak, or nil when it is acceptable.
    public func problem(_ password: String) throws -> String? {
        guard self.dictionaryIsReadable else { throw Unavailable() }
        // cracklib reads a C string: up to a NUL, which a password may contain
        let checked = String(password.unicodeScalars.prefix { $0 != "\0" })
        return Self.lock.withLock { _ in
            checked.withCString { pw in
                // an arbitrary user, not the one the server runs as
                FascistCheckUser(pw, self.dictionary, "parley", nil).map { String(cString: $0) }
            }
        }
    }
}
