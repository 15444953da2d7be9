import Foundation
import PersistLocation

/// Where the key pair of an `s3://` location comes from. This is the one statement of
/// the precedence; the first source that applies is used, and the later ones are not
/// consulted (an error in it is reported, never skipped):
///
/// 1. Credentials passed in code (`Backends.blob(_:credentials:environment:logger:)`, `S3Blob.Configuration`);
///    not a case here, as nothing needs choosing.
/// 2. The URL's `credentials_file=/path` and/or `profile=name`: that profile (default
///    `default`) of that file. With `profile=` alone, the file is the one 4 or 5 names.
///    The AWS variables play no part then: the URL says what it wants.
/// 3. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` if set).
///    One of the two without the other is an error.
/// 4. `AWS_SHARED_CREDENTIALS_FILE` (which must then exist), profile `AWS_PROFILE` or
///    `default`.
/// 5. `$HOME/.aws/credentials` if it exists, profile `AWS_PROFILE` or `default`.
///
/// Otherwise there are no credentials, an error that lists these ways. Empty variables
/// count as unset; a leading `~/` in `AWS_SHARED_CREDENTIALS_FILE` means `$HOME/`.
public enum S3CredentialSource: Hashable, Sendable {
    /// A key pair taken from the environment variables (3).
    case environment(S3Credentials)
    /// A profile of a credentials file (2, 4, 5); `origin` says what chose the file and
    /// the profile, for messages.
    case file(path: String, profile: String, origin: String)

    /// The profile used when none is named.
    public static let defaultProfile = "default"

    /// Chooses the source for `location` (pure: `environment` is the process's variables
    /// and `fileExists` is asked only about `$HOME/.aws/credentials`).
    public static func choose(
        for location: S3Location, environment: [String: String], fileExists: (String) -> Bool
    ) throws(S3CredentialsError) -> S3CredentialSource {
        func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let home = variable("HOME").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let defaultFile = home.map { $0 + "/.aws/credentials" }
        // The file of steps 4 and 5, if there is one.
        func standardFile() -> (path: String, origin: String)? {
            if let named = variable("AWS_SHARED_CREDENTIALS_FILE") {
                let path = named.hasPrefix("~/") ? (home ?? "~") + named.dropFirst() : named
                return (path, "AWS_SHARED_CREDENTIALS_FILE")
            }
            if let defaultFile, fileExists(defaultFile) { return (defaultFile, "the default location") }
            return nil
        }

        if location.credentialsFile != nil || location.profile != nil {
            let profile = location.profile ?? defaultProfile
            let profileOrigin = location.profile == nil ? "" : ", profile= in the URL"
            if let path = location.credentialsFile {
                return .file(path: path, profile: profile, origin: "credentials_file= in the URL" + profileOrigin)
            }
            guard let file = standardFile() else {
                guard let defaultFile else { throw S3CredentialsError(.notFound(defaultFile: nil)) }
                throw S3CredentialsError(.missingFile, file: defaultFile, origin: "the default location, for profile= in the URL")
            }
            return .file(path: file.path, profile: profile, origin: file.origin + profileOrigin)
        }

        if let credentials = try S3Credentials.keyPair(inEnvironment: environment) { return .environment(credentials) }

        guard let file = standardFile() else { throw S3CredentialsError(.notFound(defaultFile: defaultFile)) }
        if let profile = variable("AWS_PROFILE") {
            return .file(path: file.path, profile: profile, origin: file.origin + ", profile from AWS_PROFILE")
        }
        return .file(path: file.path, profile: defaultProfile, origin: file.origin)
    }
}

extension S3Credentials {
    /// The key pair of `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
    /// `AWS_SESSION_TOKEN` if set) in `environment`; nil when neither is set. Throws
    /// `.partialEnvironment` when one is set without the other. Empty variables count as
    /// unset.
    public static func keyPair(inEnvironment environment: [String: String]) throws(S3CredentialsError) -> S3Credentials? {
        func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        switch (variable("AWS_ACCESS_KEY_ID"), variable("AWS_SECRET_ACCESS_KEY")) {
        case (let id?, let secret?):
            return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: variable("AWS_SESSION_TOKEN"))
        case (_?, nil):
            throw S3CredentialsError(.partialEnvironment(present: "AWS_ACCESS_KEY_ID", absent: "AWS_SECRET_ACCESS_KEY"))
        case (nil, _?):
            throw S3CredentialsError(.partialEnvironment(present: "AWS_SECRET_ACCESS_KEY", absent: "AWS_ACCESS_KEY_ID"))
        case (nil, nil):
            return nil
        }
    }

    /// The key pair of the environment variables as `keyPair(inEnvironment:)` reads them,
    /// or nil when there is none or only half of one. For callers that fall back to
    /// something else; `S3CredentialSource` reports half a key pair as the error it is.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> S3Credentials? {
        (try? keyPair(inEnvironment: environment)) ?? nil
    }

    /// The credentials of `location` from the sources `S3CredentialSource` ranks, reading
    /// a credentials file when that is the source.
    public static func resolve(
        for location: S3Location, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(S3CredentialsError) -> S3Credentials {
        let source = try S3CredentialSource.choose(
            for: location, environment: environment, fileExists: { FileManager.default.fileExists(atPath: $0) })
        switch source {
        case .environment(let credentials):
            return credentials
        case .file(let path, let profile, let origin):
            return try load(file: path, profile: profile, origin: origin)
        }
    }

    /// Profile `profile` of the credentials file at `path` (see `S3CredentialsFile`).
    /// `origin` (what chose the file) only goes into error messages. The file's
    /// permissions are not checked, as the AWS CLI does not check them either.
    public static func load(file path: String, profile: String, origin: String? = nil) throws(S3CredentialsError) -> S3Credentials {
        func failure(_ problem: S3CredentialsError.Problem) -> S3CredentialsError {
            S3CredentialsError(problem, file: path, origin: origin)
        }
        let data: Data
        do {
            data = try S3LocalFile.read(path)
        } catch {
            switch error {
            case .missing: throw failure(.missingFile)
            case .directory: throw failure(.unreadableFile(reason: "it is a directory"))
            case .unreadable(let reason): throw failure(.unreadableFile(reason: reason))
            case .tooLarge(let limit):
                throw failure(.unreadableFile(reason: "it is larger than \(limit) bytes, far more than a credentials file holds"))
            }
        }
        guard let text = String(bytes: data, encoding: .utf8) else { throw failure(.unreadableFile(reason: "it is not UTF-8 text")) }
        do {
            return try S3CredentialsFile.parse(text).credentials(profile: profile)
        } catch {
            throw failure(error.problem)
        }
    }
}

/// Reading the small local files an `s3://` location names (a credentials file, a CA
/// file): whole, but never more than `sizeLimit` bytes, so a wrong path (a disk image, a
/// device) fails plainly instead of filling memory.
enum S3LocalFile {
    /// 1 MiB: far more than any credentials file or CA bundle holds.
    static let sizeLimit = 1 << 20

    /// Why a file could not be read.
    enum Failure: Error, Hashable {
        /// Nothing at the path.
        case missing
        /// A directory at the path.
        case directory
        /// It cannot be opened or read; `reason` says what the system said.
        case unreadable(reason: String)
        /// It holds more than `limit` bytes.
        case tooLarge(limit: Int)
    }

    /// The contents of the file at `path`, at most `limit` bytes long.
    static func read(_ path: String, limit: Int = sizeLimit) throws(Failure) -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .missing }
        guard !isDirectory.boolValue else { throw .directory }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .unreadable(reason: "permission denied or I/O error") }
        defer { try? handle.close() }
        let data: Data
        do {
            // One byte more than allowed tells a file of exactly `limit` bytes from a longer one.
            data = try handle.read(upToCount: limit + 1) ?? Data()
        } catch {
            throw .unreadable(reason: "\(error)")
        }
        guard data.count <= limit else { throw .tooLarge(limit: limit) }
        return data
    }
}
