import PersistLocation
import Testing

@Suite struct LocationURLTests {
    @Test func blobLocations() throws {
        #expect(try LocationURL.blob("mem://") == .memory(name: ""))
        #expect(try LocationURL.blob("mem://a") == .memory(name: "a"))
        #expect(try LocationURL.blob("file:///var/lib/blob") == .file(path: "/var/lib/blob"))
        #expect(
            try LocationURL.blob("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1")
                == .s3(S3Location(bucket: "bucket", prefix: "some/prefix", endpoint: "http://127.0.0.1:9000", region: "eu-west-1", pathStyle: true)))
        #expect(
            try LocationURL.blob("s3://bucket/p?endpoint=unix:///run/blob-store.sock")
                == .s3(S3Location(bucket: "bucket", prefix: "p", endpoint: "unix:///run/blob-store.sock", region: nil, pathStyle: true)))
        #expect(
            try LocationURL.blob("s3://bucket?region=us-east-1&path_style=false")
                == .s3(S3Location(bucket: "bucket", prefix: "", endpoint: nil, region: "us-east-1", pathStyle: false)))
    }

    /// The credential and TLS parameters of `s3://` URLs, and the default addressing
    /// whichever order the parameters come in.
    @Test func s3CredentialAndTLSParameters() throws {
        #expect(
            try LocationURL.blob("s3://b/p?endpoint=http://127.0.0.1:9000&credentials_file=/etc/txn-wal/aws&profile=ci")
                == .s3(
                    S3Location(
                        bucket: "b", prefix: "p", endpoint: "http://127.0.0.1:9000", pathStyle: true, credentialsFile: "/etc/txn-wal/aws",
                        profile: "ci")))
        // Percent-encoded values are decoded.
        #expect(
            try LocationURL.blob("s3://b?profile=my%20profile&credentials_file=/a%20b/credentials")
                == .s3(S3Location(bucket: "b", credentialsFile: "/a b/credentials", profile: "my profile")))
        #expect(
            try LocationURL.blob("s3://b?endpoint=https://s3.example.com:8443&ca_file=/etc/ca.pem&region=r")
                == .s3(S3Location(bucket: "b", endpoint: "https://s3.example.com:8443", region: "r", pathStyle: true, caFile: "/etc/ca.pem")))
        #expect(
            try LocationURL.blob("s3://b?endpoint=https://localhost:1&tls_verify=false")
                == .s3(S3Location(bucket: "b", endpoint: "https://localhost:1", pathStyle: true, tlsVerify: false)))
        // Without an endpoint (AWS's own, over HTTPS) TLS parameters apply too.
        #expect(
            try LocationURL.blob("s3://b?ca_file=/ca.pem") == .s3(S3Location(bucket: "b", pathStyle: false, caFile: "/ca.pem")))
        // path_style=false holds even when the endpoint comes after it.
        #expect(
            try LocationURL.blob("s3://b?path_style=false&endpoint=http://h:1")
                == .s3(S3Location(bucket: "b", endpoint: "http://h:1", pathStyle: false)))
        let aws = try LocationURL.blob("s3://b")
        #expect(aws == .s3(S3Location(bucket: "b", pathStyle: false)))
        if case .s3(let location) = aws { #expect(location.usesTLS) }
        if case .s3(let location) = try LocationURL.blob("s3://b?endpoint=http://h:1") { #expect(!location.usesTLS) }
        if case .s3(let location) = try LocationURL.blob("s3://b?endpoint=HTTPS://h:1") { #expect(location.usesTLS) }
    }

    /// AWS's own endpoint defaults to virtual-host style, except for a bucket name with
    /// dots (AWS's wildcard certificates cover one label); `path_style=` still decides.
    @Test func dottedBucketsDefaultToPathStyleOnAWS() throws {
        #expect(try LocationURL.blob("s3://my.dotted.bucket/p") == .s3(S3Location(bucket: "my.dotted.bucket", prefix: "p", pathStyle: true)))
        #expect(
            try LocationURL.blob("s3://my.dotted.bucket?region=eu-west-1&path_style=false")
                == .s3(S3Location(bucket: "my.dotted.bucket", region: "eu-west-1", pathStyle: false)))
        #expect(try LocationURL.blob("s3://plain-bucket") == .s3(S3Location(bucket: "plain-bucket", pathStyle: false)))
        #expect(
            try LocationURL.blob("s3://a.b?endpoint=http://h:1") == .s3(S3Location(bucket: "a.b", endpoint: "http://h:1", pathStyle: true)))
    }

    @Test func regionsAreRegionNames() throws {
        for region in ["us-east-1", "eu-central-2", "garage", "r", "us-gov-west-1"] {
            #expect(try LocationURL.blob("s3://b?region=\(region)") == .s3(S3Location(bucket: "b", region: region)))
        }
    }

    @Test(arguments: [
        ("s3://b?credentials_file=relative/path", "credentials_file must be an absolute path"),
        ("s3://b?credentials_file=", "credentials_file must be an absolute path"),
        ("s3://b?profile=", "profile must be"),
        ("s3://b?profile=a]b", "profile must be"),
        ("s3://b?profile=a&profile=b", "\"profile\" is given twice"),
        ("s3://b?ca_file=ca.pem", "ca_file must be an absolute path"),
        ("s3://b?tls_verify=no", "tls_verify must be true or false"),
        ("s3://b?endpoint=http://h:1&ca_file=/ca.pem", "apply to https endpoints only"),
        ("s3://b?endpoint=unix:///s.sock&tls_verify=false", "apply to https endpoints only"),
        ("s3://b?endpoint=https://h:1&tls_verify=false&ca_file=/ca.pem", "no use with tls_verify=false"),
        ("s3://b?region=", "region must be lower-case letters, digits and -"),
        ("s3://b?region", "region must be lower-case letters, digits and -"),
        ("s3://b?region=%00", "region must be lower-case letters, digits and -"),
        ("s3://b?region=EU-WEST-1", "region must be lower-case letters, digits and -"),
        ("s3://b?region=eu%20west", "region must be lower-case letters, digits and -"),
        ("s3://b?region=eu.west", "region must be lower-case letters, digits and -"),
        ("s3://b?region=%C3%A9u", "region must be lower-case letters, digits and -"),
    ])
    func badS3ParametersSayWhatIsWrong(_ text: String, _ reason: String) {
        #expect {
            try LocationURL.blob(text)
        } throws: { error in
            (error as? LocationParseError)?.reason.contains(reason) == true
        }
    }

    @Test func consensusLocations() throws {
        #expect(try LocationURL.consensus("mem://") == .memory(name: ""))
        #expect(try LocationURL.consensus("log:///data/consensus") == .log(path: "/data/consensus"))
        #expect(try LocationURL.consensus("consensus://127.0.0.1:7400") == .remote(host: "127.0.0.1", port: 7400, tokenFile: nil))
        #expect(
            try LocationURL.consensus("consensus://127.0.0.1:7400?token_file=/etc/t")
                == .remote(host: "127.0.0.1", port: 7400, tokenFile: "/etc/t"))
        #expect(
            try LocationURL.consensus("consensus+unix:///run/consensus.sock") == .remoteUnix(path: "/run/consensus.sock", tokenFile: nil))
        #expect(
            try LocationURL.consensus("consensus+unix:///run/consensus.sock?token_file=/run/token")
                == .remoteUnix(path: "/run/consensus.sock", tokenFile: "/run/token"))
        #expect(throws: LocationParseError.self) { try LocationURL.consensus("consensus://h:1?token=abc") }
        #expect(throws: LocationParseError.self) { try LocationURL.consensus("consensus://h:1?token_file=relative") }
    }

    @Test(arguments: [
        "", "nonsense", "ftp://x", "file://relative/dir", "file:///", "file:///dir?x=1", "s3://", "s3://b?endpoint=not-a-url",
        "s3://b?colour=blue", "s3://b?path_style=maybe", "s3://b?endpoint=unix://host/x.sock", "s3://b?endpoint=unix://",
        "s3://b?endpoint=unix:relative.sock", "s3://b?endpoint=ftp://h", "s3://b?endpoint=http://",
    ])
    func badBlobLocationsAreRefused(_ text: String) {
        #expect(throws: LocationParseError.self) { try LocationURL.blob(text) }
    }

    @Test(arguments: [
        "", "log://host/dir", "log:///", "consensus://host", "consensus://:7400", "consensus://host:0", "consensus://host:99999",
        "consensus://host:1/path", "consensus+unix://", "s3://bucket", "file:///dir",
    ])
    func badConsensusLocationsAreRefused(_ text: String) {
        #expect(throws: LocationParseError.self) { try LocationURL.consensus(text) }
    }

    @Test func errorsSayWhatIsWrong() {
        #expect {
            try LocationURL.consensus("consensus://host")
        } throws: { error in
            (error as? LocationParseError)?.description.contains("port") == true
        }
    }
}
