#!/usr/bin/env python3
"""S3 compatibility check of a running blob-store, with boto3 as the client.

Starts nothing: point it at a server that is already listening.

    python3 tools/s3-compat/test_boto3.py --endpoint http://127.0.0.1:9000 --bucket bkt

Credentials come from --access-key/--secret-key or AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY; the endpoint and bucket may also be given as S3_ENDPOINT_URL and
S3_BUCKET. Every check runs under a fresh key prefix, so the bucket may hold other data.
Prints one line per check and a summary ("N passed, M failed"); exits 1 if any check
failed, 2 if boto3 is missing or the arguments are incomplete.
"""

import argparse
import base64
import hashlib
import os
import sys
import traceback
import uuid

try:
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError as error:  # the Swift test turns this into a failure with the message
    print(f"boto3 is not importable ({error}); run tools/setup.sh (pip install -r tools/requirements.txt)", file=sys.stderr)
    sys.exit(2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("S3_ENDPOINT_URL"), help="http://host:port of the server")
    parser.add_argument("--bucket", default=os.environ.get("S3_BUCKET"), help="an existing bucket to work in")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    parser.add_argument("--large-mib", type=int, default=8, help="size of the large single-PUT object")
    args = parser.parse_args()
    missing = [name for name in ("endpoint", "bucket", "access_key", "secret_key") if not getattr(args, name)]
    if missing:
        parser.print_usage(sys.stderr)
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        sys.exit(2)
    return args


def make_client(args, access_key=None, secret_key=None):
    return boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=access_key or args.access_key,
        aws_secret_access_key=secret_key or args.secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def error_code(error):
    return error.response.get("Error", {}).get("Code"), error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def expect_client_error(call, code, status):
    try:
        call()
    except ClientError as error:
        got = error_code(error)
        assert got == (code, status), f"expected {code} {status}, got {got}"
        return
    raise AssertionError(f"expected {code} {status}, but the call succeeded")


class Checks:
    def __init__(self, args):
        self.args = args
        self.s3 = make_client(args)
        self.bucket = args.bucket
        self.prefix = f"boto3-{uuid.uuid4().hex[:12]}/"

    def key(self, name):
        return self.prefix + name

    def check_put_get_head_delete(self):
        body = b"hello from boto3\n" * 100
        put = self.s3.put_object(Bucket=self.bucket, Key=self.key("obj.txt"), Body=body)
        assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), put["ETag"]
        got = self.s3.get_object(Bucket=self.bucket, Key=self.key("obj.txt"))
        assert got["Body"].read() == body
        assert got["ContentLength"] == len(body)
        assert got["ETag"] == put["ETag"]
        assert got["LastModified"] is not None
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key("obj.txt"))
        assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
        deleted = self.s3.delete_object(Bucket=self.bucket, Key=self.key("obj.txt"))
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        # Deleting again is fine; reading is not.
        self.s3.delete_object(Bucket=self.bucket, Key=self.key("obj.txt"))
        try:
            self.s3.get_object(Bucket=self.bucket, Key=self.key("obj.txt"))
            raise AssertionError("get after delete succeeded")
        except self.s3.exceptions.NoSuchKey:
            pass
        expect_client_error(lambda: self.s3.head_object(Bucket=self.bucket, Key=self.key("obj.txt")), "404", 404)

    def check_range_gets(self):
        body = bytes(range(256)) * 4
        self.s3.put_object(Bucket=self.bucket, Key=self.key("ranged"), Body=body)
        cases = {"bytes=0-9": body[0:10], "bytes=-10": body[-10:], "bytes=1000-": body[1000:], "bytes=100-199": body[100:200]}
        for header, expected in cases.items():
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key("ranged"), Range=header)
            assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
            assert got["Body"].read() == expected, header
            first = len(body) - len(expected) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
            assert got["ContentRange"] == f"bytes {first}-{first + len(expected) - 1}/{len(body)}", got["ContentRange"]
        expect_client_error(
            lambda: self.s3.get_object(Bucket=self.bucket, Key=self.key("ranged"), Range="bytes=5000-"), "InvalidRange", 416)

    def check_large_single_put(self):
        size = self.args.large_mib << 20
        body = hashlib.sha256(b"seed").digest() * (size // 32)
        self.s3.put_object(Bucket=self.bucket, Key=self.key("large.bin"), Body=body)
        got = self.s3.get_object(Bucket=self.bucket, Key=self.key("large.bin"))["Body"].read()
        assert len(got) == size and hashlib.sha256(got).digest() == hashlib.sha256(body).digest()

    def check_checksums(self):
        body = b"checksummed body " * 1000
        # (CRC32C and CRC64NVME need botocore's optional CRT extension; the server checks
        # them too, see the Swift tests.)
        for algorithm in ("CRC32", "SHA1", "SHA256"):
            key = self.key(f"sum-{algorithm}")
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ChecksumAlgorithm=algorithm)
            assert self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read() == body, algorithm
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        self.s3.put_object(Bucket=self.bucket, Key=self.key("md5"), Body=body, ContentMD5=md5)
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        expect_client_error(
            lambda: self.s3.put_object(Bucket=self.bucket, Key=self.key("md5-bad"), Body=body, ContentMD5=wrong), "BadDigest", 400)

    def check_listing_with_pagination(self):
        names = [f"list/{i:03d}" for i in range(27)]
        for name in names:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=name.encode())
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = list(paginator.paginate(Bucket=self.bucket, Prefix=self.key("list/"), PaginationConfig={"PageSize": 10}))
        assert [page["KeyCount"] for page in pages] == [10, 10, 7], [page.get("KeyCount") for page in pages]
        listed = [item["Key"] for page in pages for item in page.get("Contents", [])]
        assert listed == [self.key(name) for name in names], listed
        sizes = {item["Key"]: item["Size"] for page in pages for item in page["Contents"]}
        assert all(sizes[self.key(name)] == len(name) for name in names)
        after = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("list/"), StartAfter=self.key("list/024"))
        assert [item["Key"] for item in after["Contents"]] == [self.key("list/025"), self.key("list/026")]
        assert after["IsTruncated"] is False
        empty = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("nothing-here/"))
        assert empty["KeyCount"] == 0 and "Contents" not in empty

    def check_listing_with_delimiter(self):
        names = ["tree/a/1", "tree/a/2", "tree/b c/1", "tree/b c/d/2", "tree/e", "tree/f+g", "tree/z"]
        for name in names:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=b"x")
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("tree/"), Delimiter="/")
        prefixes = [item["Prefix"] for item in listed.get("CommonPrefixes", [])]
        assert prefixes == [self.key("tree/a/"), self.key("tree/b c/")], listed
        keys = [item["Key"] for item in listed.get("Contents", [])]
        assert keys == [self.key("tree/e"), self.key("tree/f+g"), self.key("tree/z")], keys
        assert listed["Delimiter"] == "/" and listed["KeyCount"] == 5, listed
        # One level further down, and in pages of two: a common prefix takes a place on a
        # page, and the next page resumes after it.
        deeper = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key("tree/b c/"), Delimiter="/")
        assert [item["Prefix"] for item in deeper["CommonPrefixes"]] == [self.key("tree/b c/d/")], deeper
        assert [item["Key"] for item in deeper["Contents"]] == [self.key("tree/b c/1")], deeper
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = list(paginator.paginate(
            Bucket=self.bucket, Prefix=self.key("tree/"), Delimiter="/", PaginationConfig={"PageSize": 2}))
        assert [page["KeyCount"] for page in pages] == [2, 2, 1], [page.get("KeyCount") for page in pages]
        assert [item["Prefix"] for page in pages for item in page.get("CommonPrefixes", [])] == prefixes
        assert [item["Key"] for page in pages for item in page.get("Contents", [])] == keys

    def check_awkward_keys(self):
        keys = ["dir/with space/ünïcödé +&=?#;.txt", "../../etc/passwd", "a//b", "%2F%41", "tab\there", "~tilde*star'quote"]
        for i, name in enumerate(keys):
            self.s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=f"value {i}".encode())
        for i, name in enumerate(keys):
            assert self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read() == f"value {i}".encode(), name
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix)
        got = {item["Key"] for item in listed.get("Contents", [])}
        assert {self.key(name) for name in keys} <= got, got

    def check_errors(self):
        expect_client_error(lambda: self.s3.get_object(Bucket="no-such-bucket-here", Key="k"), "NoSuchBucket", 404)
        wrong = make_client(self.args, secret_key="not-the-secret")
        expect_client_error(lambda: wrong.get_object(Bucket=self.bucket, Key=self.key("x")), "SignatureDoesNotMatch", 403)
        unknown = make_client(self.args, access_key="AKIDNOBODYKNOWS", secret_key="x")
        expect_client_error(lambda: unknown.list_objects_v2(Bucket=self.bucket), "InvalidAccessKeyId", 403)
        expect_client_error(lambda: self.s3.get_bucket_acl(Bucket=self.bucket), "NotImplemented", 501)

    def check_buckets(self):
        name = "boto3-" + uuid.uuid4().hex[:12]
        self.s3.create_bucket(Bucket=name)
        self.s3.head_bucket(Bucket=name)
        self.s3.put_object(Bucket=name, Key="k", Body=b"v")
        assert self.s3.get_object(Bucket=name, Key="k")["Body"].read() == b"v"


def main():
    args = parse_args()
    checks = Checks(args)
    names = sorted(name for name in dir(checks) if name.startswith("check_"))
    passed, failed = 0, 0
    print(f"boto3 {boto3.__version__} (botocore {botocore.__version__}) against {args.endpoint}, bucket {args.bucket}")
    for name in names:
        try:
            getattr(checks, name)()
        except Exception:  # every failure is reported, then the next check runs
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
