/// The contents of an AWS shared-credentials file (`~/.aws/credentials`), parsed without
/// any I/O: INI sections named after profiles, each holding `name = value` settings.
///
/// ```
/// # comment
/// [default]
/// aws_access_key_id = AKIA...
/// aws_secret_access_key = ...
///
/// [staging]
/// aws_access_key_id=ASIA...
/// aws_secret_access_key=...
/// aws_session_token=...
/// ```
///
/// The syntax is the one the AWS CLI reads: comment lines start with `#` or `;`, and a
/// comment may follow a `[name]` header (`[default] # note`), but a `#` after a value is
/// part of the value (so the key settings refuse values with spaces in them rather than
/// take a comment for part of a secret); `:` may stand for `=`;
/// whitespace around names and values is ignored; setting names are case-insensitive;
/// a line indented deeper than the setting before it continues that setting (nested
/// settings such as `s3 =` blocks, which are ignored). A profile or a setting given twice
/// is an error, as it is for the AWS CLI. Settings other than the key pair are kept but
/// not interpreted.
///
/// Errors name the line and never quote it: the line may hold a secret. For the same
/// reason descriptions and mirrors of a file and its profiles show the profile names, the
/// setting names and the access key IDs, but no other value.
public struct S3CredentialsFile: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// One `[name]` section.
    public struct Profile: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
        /// The name between the brackets, without surrounding whitespace.
        public var name: String
        /// The 1-based line of its `[name]` header.
        public var line: Int
        /// Its settings: lower-cased names to values without surrounding whitespace.
        public var settings: [String: String]

        /// A profile from its parts.
        public init(name: String, line: Int, settings: [String: String]) {
            self.name = name
            self.line = line
            self.settings = settings
        }

        /// `[name] (line N: aws_access_key_id=AKIA..., aws_secret_access_key, region; other values withheld)`:
        /// the setting names sorted, only the access key ID with its value.
        public var description: String {
            let shown = settings.keys.sorted().map { name in
                name == S3CredentialsFile.accessKeyIDName ? "\(name)=\(settings[name] ?? "")" : name
            }
            let listed = shown.isEmpty ? "no settings" : shown.joined(separator: ", ") + "; other values withheld"
            return "[\(name)] (line \(line): \(listed))"
        }

        public var debugDescription: String { description }

        /// The name, the line, the access key ID and the setting names; no other value.
        public var customMirror: Mirror {
            Mirror(
                self,
                children: [
                    "name": name, "line": line, "accessKeyID": settings[S3CredentialsFile.accessKeyIDName] as Any,
                    "settingNames": settings.keys.sorted(),
                ],
                displayStyle: .struct)
        }
    }

    /// The profiles in the order of the file.
    public var profiles: [Profile]

    /// A file with these profiles.
    public init(profiles: [Profile]) {
        self.profiles = profiles
    }

    /// `S3CredentialsFile([default] (...), ...)`, each profile as its own description
    /// shows it (no secret).
    public var description: String { "S3CredentialsFile(" + profiles.map(\.description).joined(separator: ", ") + ")" }

    public var debugDescription: String { description }

    /// The profiles, each mirrored without secrets.
    public var customMirror: Mirror { Mirror(self, children: ["profiles": profiles], displayStyle: .struct) }

    /// The setting names that make up a key pair (and whose values must be one word).
    public static let accessKeyIDName = "aws_access_key_id"
    public static let secretAccessKeyName = "aws_secret_access_key"
    public static let sessionTokenName = "aws_session_token"
    static let keyNames: Set<String> = [accessKeyIDName, secretAccessKeyName, sessionTokenName]

    /// Settings by which a profile obtains credentials in ways this client does not
    /// implement (roles, SSO, external processes); named in the error when the key pair
    /// is missing, so the reason is plain.
    static let unsupportedSourceNames = [
        "role_arn", "source_profile", "credential_process", "sso_session", "sso_start_url", "web_identity_token_file",
    ]

    /// Parses `text`. Throws `S3CredentialsError` with `.syntax` naming the first bad line.
    public static func parse(_ text: String) throws(S3CredentialsError) -> S3CredentialsFile {
        var profiles: [Profile] = []
        // The setting the next deeper-indented line would continue, and its indentation.
        var lastSetting: (name: String, indent: Int)?
        // "\r\n" is one Character in Swift, so it is a separator of its own.
        var lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        if let first = lines.first, first.hasPrefix("\u{FEFF}") { lines[0] = first.dropFirst() }
        for (index, raw) in lines.enumerated() {
            let number = index + 1
            func bad(_ reason: String) -> S3CredentialsError { S3CredentialsError(.syntax(line: number, reason: reason)) }
            let indent = raw.prefix { $0 == " " || $0 == "\t" }.count
            let body = raw.trimmingWhitespace()
            if body.isEmpty || body.hasPrefix("#") || body.hasPrefix(";") { continue }
            if let setting = lastSetting, indent > setting.indent {
                guard !keyNames.contains(setting.name) else {
                    throw bad("an indented line continues \(setting.name), whose value must be on one line")
                }
                continue
            }
            lastSetting = nil
            if body.hasPrefix("[") {
                guard let close = body.firstIndex(of: "]") else { throw bad("a profile header must end with ]") }
                let after = body[body.index(after: close)...].trimmingWhitespace()
                guard after.isEmpty || after.hasPrefix("#") || after.hasPrefix(";") else {
                    throw bad("only a # or ; comment may follow the ] of a profile header")
                }
                let name = body[body.index(after: body.startIndex)..<close].trimmingWhitespace()
                guard !name.isEmpty else { throw bad("a profile header without a name") }
                if let earlier = profiles.first(where: { $0.name == name }) {
                    throw bad("profile [\(name)] was already begun on line \(earlier.line)")
                }
                profiles.append(Profile(name: name, line: number, settings: [:]))
                continue
            }
            guard let separator = body.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw bad("expected a [profile] header or a \"name = value\" setting")
            }
            guard var profile = profiles.popLast() else { throw bad("a setting before the first [profile] header") }
            let name = body[..<separator].trimmingWhitespace().lowercased()
            let value = body[body.index(after: separator)...].trimmingWhitespace()
            guard !name.isEmpty else { throw bad("a setting without a name") }
            guard profile.settings[name] == nil else { throw bad("\(name) is set twice in profile [\(profile.name)]") }
            if keyNames.contains(name), value.contains(where: { $0.isWhitespace }) {
                throw bad("the value of \(name) contains a space (comments go on lines of their own)")
            }
            profile.settings[name] = value
            profiles.append(profile)
            lastSetting = (name, indent)
        }
        return S3CredentialsFile(profiles: profiles)
    }

    /// The profile called `name`, if the file has one.
    public func profile(_ name: String) -> Profile? {
        profiles.first { $0.name == name }
    }

    /// The key pair (and session token, if any) of profile `name`. Throws
    /// `.missingProfile` (naming the profiles there are) or `.missingKey`.
    public func credentials(profile name: String) throws(S3CredentialsError) -> S3Credentials {
        guard let profile = profile(name) else {
            throw S3CredentialsError(.missingProfile(name, found: profiles.map(\.name)))
        }
        func required(_ key: String) throws(S3CredentialsError) -> String {
            guard let value = profile.settings[key], !value.isEmpty else {
                let other = Self.unsupportedSourceNames.first { profile.settings[$0] != nil }
                throw S3CredentialsError(.missingKey(key, profile: name, unsupportedSetting: other))
            }
            return value
        }
        let id = try required(Self.accessKeyIDName)
        let secret = try required(Self.secretAccessKeyName)
        let token = profile.settings[Self.sessionTokenName].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }
}

/// Why no S3 credentials could be had. The message names files, lines, profiles and
/// setting or variable names, never a key, a secret or the text of a line.
public struct S3CredentialsError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong.
    public enum Problem: Hashable, Sendable {
        /// The credentials file does not parse at `line` (1-based).
        case syntax(line: Int, reason: String)
        /// The credentials file does not exist.
        case missingFile
        /// The credentials file exists but cannot be read (`reason` from the system).
        case unreadableFile(reason: String)
        /// The file has no such profile; `found` lists the ones it has, in file order.
        case missingProfile(String, found: [String])
        /// The profile lacks a setting of the key pair. `unsupportedSetting` names a
        /// setting that shows the profile gets its credentials another way (a role, SSO,
        /// an external process), which this client does not implement.
        case missingKey(String, profile: String, unsupportedSetting: String?)
        /// One of the two environment variables of a key pair is set without the other.
        case partialEnvironment(present: String, absent: String)
        /// No source has credentials; `defaultFile` is the `~/.aws/credentials` path
        /// looked for, when a home directory is known.
        case notFound(defaultFile: String?)
    }

    /// What is wrong.
    public var problem: Problem
    /// The credentials file concerned, when there is one.
    public var file: String?
    /// What chose that file (`credentials_file=` in the URL, `AWS_SHARED_CREDENTIALS_FILE`,
    /// the default location), for the message.
    public var origin: String?

    /// An error about `file` (nil while the parser does not know the path).
    public init(_ problem: Problem, file: String? = nil, origin: String? = nil) {
        self.problem = problem
        self.file = file
        self.origin = origin
    }

    public var description: String {
        let subject = file.map { "the S3 credentials file \($0)" + (origin.map { " (from \($0))" } ?? "") } ?? "the S3 credentials file"
        switch problem {
        case .syntax(let line, let reason):
            return "\(subject), line \(line): \(reason)"
        case .missingFile:
            return "\(subject) does not exist"
        case .unreadableFile(let reason):
            return "\(subject) cannot be read: \(reason)"
        case .missingProfile(let name, let found):
            let others = found.isEmpty ? "it has no profiles" : "its profiles: " + found.map { "[\($0)]" }.joined(separator: ", ")
            return "\(subject) has no profile [\(name)] (\(others))"
        case .missingKey(let key, let profile, let unsupported):
            var message = "profile [\(profile)] of \(subject) has no \(key)"
            if let unsupported {
                message += "; it sets \(unsupported), but this client only takes a key pair written in the profile"
            }
            return message
        case .partialEnvironment(let present, let absent):
            return "\(present) is set but \(absent) is not: set both (or neither, to use a credentials file)"
        case .notFound(let defaultFile):
            let fallback = defaultFile.map { " (\($0) does not exist)" } ?? ""
            return "no S3 credentials: give credentials_file=/path (and profile=name) in the s3:// URL, set "
                + "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE, or write ~/.aws/credentials"
                + fallback
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing whitespace (spaces, tabs, line ends).
    func trimmingWhitespace() -> String {
        guard let start = firstIndex(where: { !$0.isWhitespace }), let last = lastIndex(where: { !$0.isWhitespace }) else { return "" }
        return String(self[start...last])
    }
}
