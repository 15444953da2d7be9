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
