import Foundation

/// A throwaway PKI for TLS tests (S3 over HTTPS, PostgreSQL with `sslmode`), made afresh
/// in a directory of its own: a CA, a server certificate it signed for the given DNS
/// names (and IP addresses), that certificate's key, and a second CA that signed nothing
/// (a root that is trusted but wrong). Made with python3's `cryptography` package, which
/// moto depends on, so it is there whenever moto is. Keys are EC P-256; everything is
/// valid from an hour ago for two days.
public struct TestCertificates: Sendable {
    /// The path of the CA that signed the server certificate (PEM).
    public let authority: String
    /// The path of a CA that signed nothing here (PEM).
    public let otherAuthority: String
    /// The path of the server's certificate (PEM).
    public let serverCertificate: String
    /// The path of the server's private key (PEM, PKCS#8, unencrypted; mode as the
    /// process's umask leaves it).
    public let serverKey: String

    /// What to install when the generator cannot run.
    public static let setupHint =
        "making test certificates needs python3 with the cryptography package (moto[server] in tools/requirements.txt "
        + "brings it): run tools/setup.sh"

    private static let script = #"""
        import datetime, ipaddress, sys
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        out, names, ips = sys.argv[1], sys.argv[2].split(","), [i for i in sys.argv[3].split(",") if i]
        now = datetime.datetime.now(datetime.timezone.utc)

        def build(subject, issuer, public_key, signing_key, extensions):
            builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(hours=1))
                       .not_valid_after(now + datetime.timedelta(days=2)))
            for extension, critical in extensions:
                builder = builder.add_extension(extension, critical=critical)
            return builder.sign(signing_key, hashes.SHA256())

        def authority(common_name):
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                  data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                  encipher_only=False, decipher_only=False)
            cert = build(name, name, key.public_key(), key, [
                (x509.BasicConstraints(ca=True, path_length=None), True), (usage, True),
                (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)])
            return key, cert

        def pem(cert):
            return cert.public_bytes(serialization.Encoding.PEM)

        ca_key, ca = authority("swift-txn-wal test CA")
        _, other = authority("swift-txn-wal unrelated CA")
        key = ec.generate_private_key(ec.SECP256R1())
        alternative = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        server = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), ca.subject, key.public_key(), ca_key, [
            (x509.SubjectAlternativeName(alternative), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)])
        for name, data in [("ca.pem", pem(ca)), ("other-ca.pem", pem(other)), ("server.pem", pem(server)),
                           ("server.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))]:
            with open(out + "/" + name, "wb") as f:
                f.write(data)
        """#

    /// Makes `ca.pem`, `other-ca.pem`, `server.pem` and `server.key` in the existing
    /// `directory` for a server called `names` (at least one; the first is also its common
    /// name) and reachable at `addresses` (IP addresses, possibly none).
    ///
    /// - Throws: `ConformanceFailure` with the generator's output when it fails.
    public static func make(in directory: String, names: [String], addresses: [String] = []) async throws -> TestCertificates {
        guard !names.isEmpty else { throw ConformanceFailure("a test server certificate needs at least one name") }
        let outcome = try await ChildProgram.run(
            executable: "/usr/bin/env",
            arguments: ["python3", "-c", script, directory, names.joined(separator: ","), addresses.joined(separator: ",")],
            timeout: .seconds(120))
        guard outcome.status == 0 else {
            throw ConformanceFailure("making test certificates failed (\(setupHint)):\n\(outcome.output)")
        }
        return TestCertificates(
            authority: directory + "/ca.pem", otherAuthority: directory + "/other-ca.pem", serverCertificate: directory + "/server.pem",
            serverKey: directory + "/server.key")
    }
}
