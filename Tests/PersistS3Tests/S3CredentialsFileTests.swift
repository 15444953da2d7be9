import Foundation
import PersistCore
import PersistLocation
import PersistS3
import PersistServices
import Testing

/// The AWS shared-credentials file parser, the order of credential sources, and the thin
/// shell that reads the file.
@Suite struct S3CredentialsFileTests {
    static let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

    // MARK: Parsing

    @Test func profilesCommentsAndWhitespace() throws {
        let text = """
            # a comment line
            ; another one
            [default]
            aws_access_key_id = AKIDDEFAULT
            aws_secret_access_key=\(Self.secret)
              \t
            [ staging ]
            AWS_Access_Key_ID:ASIASTAGING
            aws_secret_access_key   =   s3cr3t+/=\t
            aws_session_token = FQoGZXIvYXdzEXAMPLE//token==
            region = eu-west-1
            s3 =
                max_concurrent_requests = 20
                multipart_threshold = 64MB
            [empty token]
            aws_access_key_id = AKIDEMPTY
            aws_secret_access_key = x
            aws_session_token =
            """
        let file = try S3CredentialsFile.parse(text)
        #expect(file.profiles.map(\.name) == ["default", "staging", "empty token"])
        #expect(file.profiles.map(\.line) == [3, 7, 15])
        #expect(
            try file.credentials(profile: "default")
                == S3Credentials(accessKeyID: "AKIDDEFAULT", secretAccessKey: Self.secret, sessionToken: nil))
        #expect(
            try file.credentials(profile: "staging")
                == S3Credentials(accessKeyID: "ASIASTAGING", secretAccessKey: "s3cr3t+/=", sessionToken: "FQoGZXIvYXdzEXAMPLE//token=="))
        // Other settings are kept; the nested block under `s3 =` is not read as settings.
        let staging = try #require(file.profile("staging"))
        #expect(staging.settings["region"] == "eu-west-1")
        #expect(staging.settings["s3"] == "")
        #expect(staging.settings["max_concurrent_requests"] == nil)
        #expect(try file.credentials(profile: "empty token").sessionToken == nil)
    }

    @Test func windowsLineEndsAndAByteOrderMark() throws {
        let text = "\u{FEFF}[default]\r\naws_access_key_id = AKID\r\naws_secret_access_key = \(Self.secret)\r\n"
        let file = try S3CredentialsFile.parse(text)
        #expect(try file.credentials(profile: "default") == S3Credentials(accessKeyID: "AKID", secretAccessKey: Self.secret))
        #expect(try S3CredentialsFile.parse("") == S3CredentialsFile(profiles: []))
        // Settings indented alike are settings, not continuations of each other.
        let indented = try S3CredentialsFile.parse("[p]\n  aws_access_key_id = AKID\n  aws_secret_access_key = s\n")
        #expect(try indented.credentials(profile: "p") == S3Credentials(accessKeyID: "AKID", secretAccessKey: "s"))
    }

    @Test(arguments: [
        ("aws_access_key_id = AKID\n[default]", 1, "before the first [profile] header"),
        ("[default]\naws_access_key_id = AKID\n[unfinished\n", 3, "must end with ]"),
        ("[default] trailing", 1, "only a # or ; comment may follow"),
        ("[default]x # note", 1, "only a # or ; comment may follow"),
        ("[default]\n[  ]", 2, "without a name"),
        ("[default]\n\(secret)", 2, "expected a [profile] header"),
        ("[default]\n = \(secret)", 2, "a setting without a name"),
        ("[a]\n[b]\n# c\n[a]", 4, "already begun on line 1"),
        ("[a]\naws_secret_access_key = \(secret)\nAWS_SECRET_ACCESS_KEY = \(secret)", 3, "aws_secret_access_key is set twice in profile [a]"),
        ("[a]\naws_secret_access_key = \(secret) # mine", 2, "contains a space"),
        ("[a]\naws_secret_access_key = \(secret)\n  more", 3, "must be on one line"),
    ])
    func badLinesAreNamedWithoutTheirText(_ text: String, _ line: Int, _ reason: String) {
        do {
            let parsed = try S3CredentialsFile.parse(text)
            Issue.record("parsed: \(parsed.profiles.map(\.name))")
        } catch {
            guard case .syntax(let at, let why) = error.problem else {
                Issue.record("not a syntax error: \(error)")
                return
            }
            #expect(at == line, "\(error)")
            #expect(why.contains(reason), "\(error)")
            #expect(error.description.contains("line \(line): "), "\(error)")
            #expect(!error.description.contains(Self.secret), "the message quotes a secret: \(error)")
        }
    }

    /// A comment may follow a profile header, as the AWS CLI allows; it is not part of
    /// the name.
    @Test func commentsAfterProfileHeaders() throws {
        let text = """
            [default] # the usual one
            aws_access_key_id = AKIDDEFAULT
            aws_secret_access_key = \(Self.secret)
            [ci];from the vault
            aws_access_key_id = AKIDCI
            aws_secret_access_key = ci-secret
            [plain]\t#
            """
        let file = try S3CredentialsFile.parse(text)
        #expect(file.profiles.map(\.name) == ["default", "ci", "plain"])
        #expect(try file.credentials(profile: "default") == S3Credentials(accessKeyID: "AKIDDEFAULT", secretAccessKey: Self.secret))
        #expect(try file.credentials(profile: "ci") == S3Credentials(accessKeyID: "AKIDCI", secretAccessKey: "ci-secret"))
    }

    @Test func missingProfilesAndKeysAreNamed() throws {
        let file = try S3CredentialsFile.parse(
            """
            [only-id]
            aws_access_key_id = AKID
            [only-secret]
            aws_secret_access_key = \(Self.secret)
            [role]
            role_arn = arn:aws:iam::123456789012:role/x
            source_profile = only-id
            """)
        #expect(throws: S3CredentialsError(.missingProfile("default", found: ["only-id", "only-secret", "role"]))) {
            try file.credentials(profile: "default")
        }
        #expect(throws: S3CredentialsError(.missingKey("aws_secret_access_key", profile: "only-id", unsupportedSetting: nil))) {
            try file.credentials(profile: "only-id")
        }
        #expect(throws: S3CredentialsError(.missingKey("aws_access_key_id", profile: "only-secret", unsupportedSetting: nil))) {
            try file.credentials(profile: "only-secret")
        }
        #expect(throws: S3CredentialsError(.missingKey("aws_access_key_id", profile: "role", unsupportedSetting: "role_arn"))) {
            try file.credentials(profile: "role")
        }
        let described = S3CredentialsError(
            .missingProfile("prod", found: ["a", "b"]), file: "/etc/aws", origin: "credentials_file= in the URL"
        ).description
        #expect(described == "the S3 credentials file /etc/aws (from credentials_file= in the URL) has no profile [prod] (its profiles: [a], [b])")
        #expect(S3CredentialsError(.missingProfile("p", found: [])).description.hasSuffix("(it has no profiles)"))
        let role = S3CredentialsError(.missingKey("aws_access_key_id", profile: "role", unsupportedSetting: "role_arn")).description
        #expect(role.contains("it sets role_arn"), "\(role)")
    }

    @Test func credentialsNeverPrintTheirSecret() {
        let credentials = S3Credentials(accessKeyID: "AKIDPRINTED", secretAccessKey: Self.secret, sessionToken: "TOKENVALUE")
        for text in ["\(credentials)", String(reflecting: credentials), "\([credentials])", "\(S3CredentialSource.environment(credentials))"] {
            #expect(text.contains("AKIDPRINTED"), "\(text)")
            #expect(!text.contains(Self.secret) && !text.contains("TOKENVALUE"), "\(text)")
        }
    }

    /// A parsed file and its profiles print, debug-print and dump the key IDs and the
    /// setting names, never a secret or a session token.
    @Test func parsedFilesNeverPrintTheirSecrets() throws {
        let file = try S3CredentialsFile.parse(
            """
            [default]
            aws_access_key_id = AKIDPRINTED
            aws_secret_access_key = \(Self.secret)
            aws_session_token = TOKENVALUE
            region = eu-west-1
            """)
        let profile = try #require(file.profile("default"))
        var dumpedFile = ""
        dump(file, to: &dumpedFile)
        var dumpedProfile = ""
        dump(profile, to: &dumpedProfile)
        let credentials = try file.credentials(profile: "default")
        var dumpedCredentials = ""
        dump(credentials, to: &dumpedCredentials)
        let texts = [
            "\(file)", String(reflecting: file), "\(profile)", String(reflecting: profile), "\([profile])", dumpedFile, dumpedProfile,
            dumpedCredentials,
        ]
        for text in texts {
            #expect(text.contains("AKIDPRINTED"), "\(text)")
            #expect(!text.contains(Self.secret) && !text.contains("TOKENVALUE"), "\(text)")
        }
        #expect("\(profile)".contains("aws_session_token") && "\(profile)".contains("[default]"), "\(profile)")
        // The values stay available to code that asks for them.
        #expect(profile.settings["aws_secret_access_key"] == Self.secret)
    }

    // MARK: Choosing the source

    static let environmentKeys = S3Credentials(accessKeyID: "AKIDENV", secretAccessKey: "env-secret")

    static func choose(
        _ location: S3Location, _ environment: [String: String], existing: Set<String> = []
    ) throws(S3CredentialsError) -> S3CredentialSource {
        try S3CredentialSource.choose(for: location, environment: environment, fileExists: { existing.contains($0) })
    }

    @Test func theURLWinsOverTheEnvironment() throws {
        let everything = [
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SHARED_CREDENTIALS_FILE": "/env/credentials",
            "AWS_PROFILE": "env-profile", "HOME": "/home/u",
        ]
        #expect(
            try Self.choose(S3Location(bucket: "b", credentialsFile: "/url/credentials", profile: "ci"), everything)
                == .file(path: "/url/credentials", profile: "ci", origin: "credentials_file= in the URL, profile= in the URL"))
        // A URL file without a profile: "default", not AWS_PROFILE.
        #expect(
            try Self.choose(S3Location(bucket: "b", credentialsFile: "/url/credentials"), everything)
                == .file(path: "/url/credentials", profile: "default", origin: "credentials_file= in the URL"))
        // A URL profile without a file: the standard file, not the environment's keys.
        #expect(
            try Self.choose(S3Location(bucket: "b", profile: "ci"), everything)
                == .file(path: "/env/credentials", profile: "ci", origin: "AWS_SHARED_CREDENTIALS_FILE, profile= in the URL"))
        #expect(
            try Self.choose(S3Location(bucket: "b", profile: "ci"), ["HOME": "/home/u/"], existing: ["/home/u/.aws/credentials"])
                == .file(path: "/home/u/.aws/credentials", profile: "ci", origin: "the default location, profile= in the URL"))
        #expect(throws: S3CredentialsError(.missingFile, file: "/home/u/.aws/credentials", origin: "the default location, for profile= in the URL")) {
            try Self.choose(S3Location(bucket: "b", profile: "ci"), ["HOME": "/home/u"])
        }
        #expect(throws: S3CredentialsError(.notFound(defaultFile: nil))) { try Self.choose(S3Location(bucket: "b", profile: "ci"), [:]) }
    }

    /// The one reading of the key variables: the throwing form says which half is
    /// missing, `fromEnvironment` (for callers with a fallback) takes half a pair as none.
    @Test func theKeyVariablesAreReadOneWay() throws {
        let cases: [([String: String], S3Credentials?)] = [
            ([:], nil),
            (["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""], nil),
            (["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"], S3Credentials(accessKeyID: "a", secretAccessKey: "s")),
            (
                ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"],
                S3Credentials(accessKeyID: "a", secretAccessKey: "s", sessionToken: "t")
            ),
            (["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": ""], S3Credentials(accessKeyID: "a", secretAccessKey: "s")),
        ]
        for (environment, expected) in cases {
            #expect(try S3Credentials.keyPair(inEnvironment: environment) == expected, "\(environment)")
            #expect(S3Credentials.fromEnvironment(environment) == expected, "\(environment)")
        }
        let half = ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": ""]
        #expect(throws: S3CredentialsError(.partialEnvironment(present: "AWS_ACCESS_KEY_ID", absent: "AWS_SECRET_ACCESS_KEY"))) {
            try S3Credentials.keyPair(inEnvironment: half)
        }
        #expect(S3Credentials.fromEnvironment(half) == nil)
    }

    @Test func theEnvironmentInItsOrder() throws {
        let location = S3Location(bucket: "b")
        let keys = ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret"]
        let home = "/home/u/.aws/credentials"
        // Keys first, even when a file is named and the default file exists.
        #expect(
            try Self.choose(location, keys.merging(["AWS_SHARED_CREDENTIALS_FILE": "/f", "HOME": "/home/u"]) { $1 }, existing: [home])
                == .environment(Self.environmentKeys))
        #expect(
            try Self.choose(location, keys.merging(["AWS_SESSION_TOKEN": "tok"]) { $1 })
                == .environment(S3Credentials(accessKeyID: "AKIDENV", secretAccessKey: "env-secret", sessionToken: "tok")))
        #expect(throws: S3CredentialsError(.partialEnvironment(present: "AWS_ACCESS_KEY_ID", absent: "AWS_SECRET_ACCESS_KEY"))) {
            try Self.choose(location, ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": ""])
        }
        #expect(throws: S3CredentialsError(.partialEnvironment(present: "AWS_SECRET_ACCESS_KEY", absent: "AWS_ACCESS_KEY_ID"))) {
            try Self.choose(location, ["AWS_SECRET_ACCESS_KEY": "env-secret"])
        }
        // Then AWS_SHARED_CREDENTIALS_FILE (~/ expanded), whether or not it exists.
        #expect(
            try Self.choose(location, ["AWS_SHARED_CREDENTIALS_FILE": "~/creds", "HOME": "/home/u", "AWS_PROFILE": "p"])
                == .file(path: "/home/u/creds", profile: "p", origin: "AWS_SHARED_CREDENTIALS_FILE, profile from AWS_PROFILE"))
        #expect(
            try Self.choose(location, ["AWS_SHARED_CREDENTIALS_FILE": "/f", "AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": ""])
                == .file(path: "/f", profile: "default", origin: "AWS_SHARED_CREDENTIALS_FILE"))
        // Then ~/.aws/credentials if it exists.
        #expect(
            try Self.choose(location, ["HOME": "/home/u"], existing: [home])
                == .file(path: home, profile: "default", origin: "the default location"))
        let nothing = S3CredentialsError(.notFound(defaultFile: home))
        #expect(throws: nothing) { try Self.choose(location, ["HOME": "/home/u"]) }
        #expect(nothing.description.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "\(nothing)")
        #expect(nothing.description.contains("credentials_file="), "\(nothing)")
        #expect(nothing.description.contains("\(home) does not exist"), "\(nothing)")
    }

    // MARK: Reading the file

    @Test func loadingReadsTheFileAndNamesItInErrors() throws {
        let directory = BlobStoreTestDirectory("credentials")
        defer { directory.remove() }
        let path = directory.path + "/credentials"
        try "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = \(Self.secret)\n".write(
            toFile: path, atomically: true, encoding: .utf8)
        #expect(try S3Credentials.load(file: path, profile: "default") == S3Credentials(accessKeyID: "AKIDFILE", secretAccessKey: Self.secret))
        #expect(
            try S3Credentials.resolve(for: S3Location(bucket: "b"), environment: ["AWS_SHARED_CREDENTIALS_FILE": path])
                == S3Credentials(accessKeyID: "AKIDFILE", secretAccessKey: Self.secret))
        #expect(throws: S3CredentialsError(.notFound(defaultFile: directory.path + "/nowhere/.aws/credentials"))) {
            try S3Credentials.resolve(for: S3Location(bucket: "b"), environment: ["HOME": directory.path + "/nowhere"])
        }
    }

    @Test func loadingErrors() throws {
        let directory = BlobStoreTestDirectory("credentials-errors")
        defer { directory.remove() }
        let missing = directory.path + "/missing"
        #expect(throws: S3CredentialsError(.missingFile, file: missing, origin: "credentials_file= in the URL")) {
            try S3Credentials.resolve(for: S3Location(bucket: "b", credentialsFile: missing), environment: [:])
        }
        #expect(throws: S3CredentialsError(.unreadableFile(reason: "it is a directory"), file: directory.path)) {
            try S3Credentials.load(file: directory.path, profile: "default")
        }
        let binary = directory.path + "/binary"
        #expect(FileManager.default.createFile(atPath: binary, contents: Data([0x5B, 0xFF, 0xFE, 0x5D])))
        #expect(throws: S3CredentialsError(.unreadableFile(reason: "it is not UTF-8 text"), file: binary)) {
            try S3Credentials.load(file: binary, profile: "default")
        }
        // One byte over the 1 MiB a credentials file may have.
        let huge = directory.path + "/huge"
        #expect(FileManager.default.createFile(atPath: huge, contents: Data(repeating: 0x23, count: (1 << 20) + 1)))
        #expect(
            throws: S3CredentialsError(
                .unreadableFile(reason: "it is larger than 1048576 bytes, far more than a credentials file holds"), file: huge)
        ) {
            try S3Credentials.load(file: huge, profile: "default")
        }
        // Exactly 1 MiB is read (and parsed: all comment lines here).
        let limit = directory.path + "/limit"
        let comments = Data(repeating: 0x23, count: (1 << 20) - 1) + Data([0x0A])
        #expect(FileManager.default.createFile(atPath: limit, contents: comments))
        #expect(throws: S3CredentialsError(.missingProfile("default", found: []), file: limit)) {
            try S3Credentials.load(file: limit, profile: "default")
        }
        let broken = directory.path + "/broken"
        try "[default]\naws_secret_access_key \(Self.secret)\n".write(toFile: broken, atomically: true, encoding: .utf8)
        do {
            _ = try S3Credentials.load(file: broken, profile: "default", origin: "AWS_SHARED_CREDENTIALS_FILE")
            Issue.record("a broken file was accepted")
        } catch {
            #expect(error.file == broken && error.origin == "AWS_SHARED_CREDENTIALS_FILE")
            #expect(error.description.hasPrefix("the S3 credentials file \(broken) (from AWS_SHARED_CREDENTIALS_FILE), line 2: "), "\(error)")
            #expect(!error.description.contains(Self.secret), "\(error)")
        }
    }

    /// `Backends.blob` reports a credentials problem as a determinate invalid-argument
    /// error naming the URL and the file, before any connection is made.
    @Test func backendsReportCredentialProblems() throws {
        let url = "s3://b?endpoint=http://127.0.0.1:9&credentials_file=/nonexistent/aws-credentials&profile=ci"
        do {
            _ = try Backends.blob(url, environment: ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret"])
            Issue.record("opened without credentials")
        } catch let error as StorageError {
            #expect(error.code == .invalidArgument && error.isDeterminate)
            #expect(error.message.hasPrefix(url + ": the S3 credentials file /nonexistent/aws-credentials"), "\(error)")
            #expect(error.message.contains("does not exist"), "\(error)")
        }
        do {
            _ = try Backends.blob("s3://b?endpoint=http://127.0.0.1:9", environment: [:])
            Issue.record("opened without credentials")
        } catch let error as StorageError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("no S3 credentials"), "\(error)")
        }
    }
}
