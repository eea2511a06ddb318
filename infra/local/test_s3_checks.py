"""Tests of s3_checks: the bench's S3 refuses what S3 refuses.

    cd infra/local && ../../.venv/bin/python -m unittest test_s3_checks -v

Requests are signed by botocore itself (S3SigV4Auth, S3SigV4QueryAuth), so
the signatures checked are AWS's, not this module's idea of them; the
aws-chunked bodies are built by the small encoders below, from the format the
S3 documentation gives, their chunk signatures computed with botocore's
signing key. Known answers from the S3 documentation's examples pin the
algorithm too. The end-to-end tests put check_request in front of moto in a
real werkzeug server, as moto_bench does, and send what boto3, the Rust SDK
and curl send.
"""

import base64
import datetime
import hashlib
import http.client
import io
import os
import threading
import time
import unittest
import zlib
from urllib.parse import quote, unquote, urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import s3_checks
from s3_checks import Refused, check_body, check_presigned, check_request, crc32c, crc64nvme

AKID = "AKIDBENCHCHECKS"
SECRET = "bench-checks-secret"
ENDPOINT = "http://127.0.0.1:5000"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def secret_of(access_key):
    return SECRET if access_key == AKID else None


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class Signer(S3SigV4Auth):
    """botocore's S3 signer, with the payload hash it signs chosen by the test
    (it would take the body's SHA-256 over http)."""

    def __init__(self, secret=SECRET, payload=None, access_key=AKID):
        super().__init__(Credentials(access_key, secret), "s3", "us-east-1")
        self.fixed_payload = payload

    def payload(self, request):
        return self.fixed_payload if self.fixed_payload is not None else super().payload(request)


def signed(method, target, headers=None, body=b"", payload=None, secret=SECRET, access_key=AKID):
    """An AWSRequest to ENDPOINT + target, signed by botocore."""
    request = AWSRequest(method=method, url=ENDPOINT + target, data=body, headers=dict(headers or {}))
    signer = Signer(secret, payload, access_key)
    signer.add_auth(request)
    return request, signer


def environ_of(request, body=None, chunked_transfer=False):
    """The WSGI environ werkzeug's dev server makes of this request: the
    target as sent in RAW_URI/REQUEST_URI, Host in HTTP_HOST, Content-Type
    and Content-Length out of HTTP_*."""
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    target = split.path + ("?" + split.query if split.query else "")
    data = prepared.body if body is None else body
    data = data or b""
    environ = {
        "REQUEST_METHOD": prepared.method, "SCRIPT_NAME": "", "PATH_INFO": unquote(split.path),
        "QUERY_STRING": split.query, "RAW_URI": target, "REQUEST_URI": target,
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": io.BytesIO(data), "HTTP_HOST": split.netloc,
    }
    for name, value in prepared.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = value if isinstance(value, str) else value.decode()
    environ.pop("CONTENT_LENGTH", None)
    if chunked_transfer:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    elif data:
        environ["CONTENT_LENGTH"] = str(len(data))
    return environ


def refusal(environ, at=None):
    """The error code check_request answers with, None when it lets the request through."""
    try:
        check_request(environ, secret_of, at or now())
    except Refused as refused:
        return refused.code
    return None


# --- aws-chunked encoders, from the format in the S3 documentation --------

def unsigned_chunked(data: bytes, trailers: dict, chunk=64 * 1024) -> bytes:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER as the Rust SDK writes it: upper-case
    hex sizes, chunks, `0`, trailer lines `name:value`, an empty line."""
    out = b""
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        out += f"{len(piece):X}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers.items():
        out += f"{name}:{value}\r\n".encode()
    return out + b"\r\n"


def signed_chunked(request, signer, data: bytes, chunk=8192, trailers=None) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER): each chunk signed over
    the previous signature (the first over the seed, the Authorization
    header's), the trailer over the last chunk's."""
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    timestamp, scope = request.context["timestamp"], signer.credential_scope(request)

    def sign(kind, hashed):
        nonlocal previous
        previous = signer.signature(
            "\n".join([f"AWS4-HMAC-SHA256-{kind}", timestamp, scope, previous, hashed]), request)
        return previous

    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    out = b""
    for piece in pieces:
        signature = sign("PAYLOAD", f"{EMPTY_SHA256}\n{hashlib.sha256(piece).hexdigest()}")
        out += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece
        if piece:
            out += b"\r\n"
    if trailers is None:
        return out + b"\r\n"
    canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
    signature = sign("TRAILER", hashlib.sha256(canonical.encode()).hexdigest())
    for name, value in trailers.items():
        out += f"{name}:{value}\r\n".encode()
    return out + f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()


def flip_first_data_byte(body: bytes) -> bytes:
    """The aws-chunked body with the first byte of its first chunk's data changed."""
    at = body.index(b"\r\n") + 2
    return body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]


class Unreadable(io.RawIOBase):
    """A wsgi.input that fails the test if it is read."""

    def read(self, *args):
        raise AssertionError("the body was read though no check needed it")

    readinto = readall = read


class Checksums(unittest.TestCase):
    def test_crc32c_check_value(self):
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(crc32c(b"test data"), 0x3379B4CA)  # aws-smithy-checksums' test
        self.assertEqual(crc32c(b""), 0)
        self.assertEqual(crc32c(b"56789", crc32c(b"1234")), 0xE3069283)

    def test_crc64nvme_check_value(self):
        self.assertEqual(crc64nvme(b"123456789"), 0xAE8B14860A799888)
        self.assertEqual(crc64nvme(b"test data"), 0xAECAF3AF9C98A855)  # aws-smithy-checksums' test

    def test_crc32c_of_the_s3_documentation_example(self):
        # 66560 bytes of "a": the trailer in "Signature calculations for trailing headers".
        self.assertEqual(s3_checks.DIGESTS["x-amz-checksum-crc32c"](b"a" * 66560), "sOO8/Q==")

    def test_crcs_are_fast_enough_for_parts(self):
        data = os.urandom(12 * 1024 * 1024)
        for crc in (crc32c, crc64nvme):
            started = time.monotonic()
            crc(data)
            self.assertLess(time.monotonic() - started, 6.0, crc.__name__)


class HeaderSigned(unittest.TestCase):
    def test_a_signed_get_passes(self):
        request, _ = signed("GET", "/bucket/key.txt", {"Range": "bytes=0-9"})
        self.assertEqual(request.headers["X-Amz-Content-SHA256"], EMPTY_SHA256)
        self.assertIsNone(refusal(environ_of(request)))

    def test_a_signed_put_passes_and_its_body_is_put_back(self):
        body = b"evidence " * 1000
        request, _ = signed("PUT", "/bucket/cases/c-1/disk.img", {
            "Content-Type": "application/octet-stream", "x-amz-meta-case": "c-1",
            "Content-MD5": b64(hashlib.md5(body).digest()),
            "x-amz-checksum-sha256": b64(hashlib.sha256(body).digest())}, body)
        self.assertEqual(request.headers["X-Amz-Content-SHA256"], hashlib.sha256(body).hexdigest())
        self.assertIn("content-type", request.headers["Authorization"])
        environ = environ_of(request)
        self.assertIsNone(refusal(environ))
        self.assertEqual(environ["wsgi.input"].read(), body)
        self.assertEqual(environ["CONTENT_LENGTH"], str(len(body)))

    def test_unsigned_payload_passes_without_reading_the_body(self):
        request, _ = signed("PUT", "/bucket/key", body=b"abc", payload="UNSIGNED-PAYLOAD")
        environ = environ_of(request)
        environ["wsgi.input"] = Unreadable()
        self.assertIsNone(refusal(environ))

    def test_a_query_is_canonical_whatever_its_order_and_encoding(self):
        request, _ = signed("GET", "/bucket?prefix=cases%2Fc-1%2F&list-type=2&max-keys=5&delimiter=%2F")
        self.assertIsNone(refusal(environ_of(request)))
        request, _ = signed("POST", "/bucket/key?uploads")
        self.assertIsNone(refusal(environ_of(request)), "a parameter with no `=`")
        request, _ = signed("GET", "/bucket/a%20key%2Bwith%3Dodd%26chars~")
        self.assertIsNone(refusal(environ_of(request)), "the path as sent")

    def test_a_raw_plus_in_the_query_is_a_plus(self):
        request, _ = signed("GET", "/bucket?prefix=a%2Bb")
        environ = environ_of(request)
        environ["RAW_URI"] = environ["REQUEST_URI"] = "/bucket?prefix=a+b"
        self.assertIsNone(refusal(environ))
        environ = environ_of(request)
        environ["RAW_URI"] = environ["REQUEST_URI"] = "/bucket?prefix=a%20b"
        self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_any_changed_signed_header_is_refused(self):
        request, _ = signed("PUT", "/bucket/key", {"x-amz-meta-case": "c-1", "Content-Type": "text/plain",
                                                    "x-amz-storage-class": "STANDARD"}, b"x")
        for key, value in [("HTTP_X_AMZ_META_CASE", "c-2"), ("CONTENT_TYPE", "text/html"),
                           ("HTTP_X_AMZ_STORAGE_CLASS", "GLACIER"), ("HTTP_HOST", "127.0.0.1:5001"),
                           ("HTTP_X_AMZ_DATE", None)]:
            environ = environ_of(request)
            if value is None:  # another second, same day
                stamp = environ[key]
                value = stamp[:-3] + ("00Z" if stamp[-3:] != "00Z" else "01Z")
            environ[key] = value
            with self.subTest(header=key):
                self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_an_underscored_header_moto_preserves_is_signed_as_sent(self):
        request, _ = signed("PUT", "/bucket/key", {"x-amz-meta-case_id": "c-1"}, b"x")
        environ = environ_of(request)  # HTTP_X_AMZ_META_CASE_ID, and its name as moto's request handler keeps it:
        environ["moto.preserved_header_names"] = {"HTTP_X_AMZ_META_CASE_ID": "x-amz-meta-case_id"}
        self.assertIsNone(refusal(environ))
        del environ["moto.preserved_header_names"]
        self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_spaces_in_header_values_are_canonical(self):
        request, _ = signed("PUT", "/bucket/key", {"x-amz-meta-note": "two  spaces"}, b"x")
        environ = environ_of(request)
        environ["HTTP_X_AMZ_META_NOTE"] = "  two   spaces "
        self.assertIsNone(refusal(environ))

    def test_a_changed_path_or_query_is_refused(self):
        request, _ = signed("PUT", "/bucket/key?partNumber=1&uploadId=u-1", body=b"x")
        for target in ["/bucket/other?partNumber=1&uploadId=u-1", "/bucket/key?partNumber=2&uploadId=u-1",
                       "/bucket/key?partNumber=1&uploadId=u-2", "/bucket/key?partNumber=1&uploadId=u-1&x-id=1",
                       "/bucket/key?partNumber=1", "/bucket/./key?partNumber=1&uploadId=u-1"]:
            environ = environ_of(request)
            environ["RAW_URI"] = environ["REQUEST_URI"] = target
            with self.subTest(target=target):
                self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_a_changed_method_is_refused(self):
        request, _ = signed("GET", "/bucket/key")
        environ = environ_of(request)
        environ["REQUEST_METHOD"] = "DELETE"
        self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_a_body_that_is_not_its_payload_hash_is_refused(self):
        request, _ = signed("PUT", "/bucket/key", body=b"the body signed")
        self.assertEqual(refusal(environ_of(request, body=b"another body!!!")), "XAmzContentSHA256Mismatch")
        request, _ = signed("GET", "/bucket/key")
        self.assertEqual(refusal(environ_of(request, body=b"smuggled")), "XAmzContentSHA256Mismatch")

    def test_a_changed_payload_hash_is_refused(self):
        request, _ = signed("PUT", "/bucket/key", body=b"abc")
        environ = environ_of(request)
        environ["HTTP_X_AMZ_CONTENT_SHA256"] = "UNSIGNED-PAYLOAD"
        self.assertEqual(refusal(environ), "SignatureDoesNotMatch")

    def test_a_wrong_secret_or_unknown_key_is_refused(self):
        request, _ = signed("GET", "/bucket/key", secret="not-the-secret")
        self.assertEqual(refusal(environ_of(request)), "SignatureDoesNotMatch")
        request, _ = signed("GET", "/bucket/key", access_key="AKIDNOBODYKNOWS")
        self.assertEqual(refusal(environ_of(request)), "InvalidAccessKeyId")

    def test_a_skewed_date_is_refused(self):
        request, _ = signed("GET", "/bucket/key")
        signed_at = datetime.datetime.strptime(request.context["timestamp"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        for minutes in (14, -14):
            self.assertIsNone(refusal(environ_of(request), signed_at + datetime.timedelta(minutes=minutes)))
        for minutes in (16, -16, 60 * 24):
            self.assertEqual(refusal(environ_of(request), signed_at + datetime.timedelta(minutes=minutes)),
                             "RequestTimeTooSkewed")

    def test_a_malformed_or_incomplete_authorization_is_refused(self):
        request, _ = signed("GET", "/bucket/key")
        environ = environ_of(request)
        environ["HTTP_AUTHORIZATION"] = environ["HTTP_AUTHORIZATION"].replace("SignedHeaders=", "Signed=")
        self.assertEqual(refusal(environ), "AuthorizationHeaderMalformed")
        environ = environ_of(request)
        del environ["HTTP_X_AMZ_CONTENT_SHA256"]
        self.assertEqual(refusal(environ), "InvalidRequest")
        environ = environ_of(request)
        environ["HTTP_X_AMZ_CONTENT_SHA256"] = "STREAMING-SOMETHING"
        self.assertEqual(refusal(environ), "InvalidArgument")
        environ = environ_of(request)
        del environ["HTTP_X_AMZ_DATE"]
        self.assertEqual(refusal(environ), "AccessDenied")

    def test_a_refusal_is_well_formed_xml(self):
        import xml.etree.ElementTree as ElementTree

        request, _ = signed("GET", "/bucket/key")
        environ = environ_of(request)
        environ["HTTP_AUTHORIZATION"] = "AWS4-HMAC-SHA256 Credential=<&>"
        with self.assertRaises(Refused) as refused:
            check_request(environ, secret_of, now())
        error = ElementTree.fromstring(refused.exception.xml())
        self.assertEqual(error.findtext("Code"), "AuthorizationHeaderMalformed")
        self.assertIn("<key>", error.findtext("Message"))

    def test_the_s3_documentation_example_get_passes(self):
        # "Signature Calculations for the Authorization Header: Transferring
        # Payload in a Single Chunk", GET Object.
        environ = {
            "REQUEST_METHOD": "GET", "RAW_URI": "/test.txt", "wsgi.input": Unreadable(),
            "HTTP_HOST": "examplebucket.s3.amazonaws.com", "HTTP_RANGE": "bytes=0-9",
            "HTTP_X_AMZ_CONTENT_SHA256": EMPTY_SHA256, "HTTP_X_AMZ_DATE": "20130524T000000Z",
            "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
            "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"}
        secret = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}.get
        at = datetime.datetime(2013, 5, 24, 0, 5, tzinfo=datetime.timezone.utc)
        check_request(environ, secret, at)
        environ["HTTP_RANGE"] = "bytes=0-10"
        with self.assertRaises(Refused) as refused:
            check_request(environ, secret, at)
        self.assertEqual(refused.exception.code, "SignatureDoesNotMatch")

    def test_a_request_signed_for_another_service_is_left_alone(self):
        request = AWSRequest(method="POST", url=ENDPOINT + "/", data=b"Action=DescribeInstances")
        S3SigV4Auth(Credentials(AKID, "whatever"), "ec2", "us-east-1").add_auth(request)
        environ = environ_of(request)
        environ["wsgi.input"] = Unreadable()
        self.assertIsNone(refusal(environ))

    def test_both_a_header_and_a_query_signature_is_refused(self):
        request, _ = signed("GET", "/bucket/key?X-Amz-Signature=abc")
        self.assertEqual(refusal(environ_of(request)), "InvalidArgument")


class AwsChunked(unittest.TestCase):
    def unsigned_put(self, data, trailers, trailer_names=None, decoded_length=None, body=None):
        body = unsigned_chunked(data, trailers) if body is None else body
        names = ",".join(trailers) if trailer_names is None else trailer_names
        headers = {"Content-Encoding": "aws-chunked", "x-amz-trailer": names,
                   "x-amz-decoded-content-length": str(len(data) if decoded_length is None else decoded_length),
                   "x-amz-sdk-checksum-algorithm": "CRC32", "Content-Length": str(len(body))}
        request, _ = signed("PUT", "/bucket/key?x-id=PutObject", headers, payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        return environ_of(request, body=body), body

    def test_an_unsigned_trailer_body_passes_with_each_checksum(self):
        data = os.urandom(200 * 1024 + 17)
        for name, digest in [("x-amz-checksum-crc32", zlib.crc32(data).to_bytes(4, "big")),
                             ("x-amz-checksum-crc32c", crc32c(data).to_bytes(4, "big")),
                             ("x-amz-checksum-crc64nvme", crc64nvme(data).to_bytes(8, "big")),
                             ("x-amz-checksum-sha256", hashlib.sha256(data).digest()),
                             ("x-amz-checksum-sha1", hashlib.sha1(data).digest())]:
            with self.subTest(trailer=name):
                environ, body = self.unsigned_put(data, {name: b64(digest)})
                self.assertIsNone(refusal(environ))
                self.assertEqual(environ["wsgi.input"].read(), body, "the raw body, still encoded")
                self.assertEqual(environ["CONTENT_LENGTH"], str(len(body)))

    def test_a_wrong_trailer_checksum_is_refused(self):
        data = b"memory image part " * 5000
        other = data[:-1] + b"!"
        for name, digest in [("x-amz-checksum-crc32", zlib.crc32(other).to_bytes(4, "big")),
                             ("x-amz-checksum-crc32c", crc32c(other).to_bytes(4, "big")),
                             ("x-amz-checksum-crc64nvme", crc64nvme(other).to_bytes(8, "big")),
                             ("x-amz-checksum-sha256", hashlib.sha256(other).digest())]:
            with self.subTest(trailer=name):
                environ, _ = self.unsigned_put(data, {name: b64(digest)})
                self.assertEqual(refusal(environ), "BadDigest")

    def test_a_changed_chunk_is_refused_by_its_trailer(self):
        data = b"a" * 70000
        environ, body = self.unsigned_put(data, {"x-amz-checksum-crc32": b64(zlib.crc32(data).to_bytes(4, "big"))})
        environ["wsgi.input"] = io.BytesIO(flip_first_data_byte(body))
        self.assertEqual(refusal(environ), "BadDigest")

    def test_a_missing_trailer_or_wrong_length_is_refused(self):
        data = b"abc" * 100
        crc = {"x-amz-checksum-crc32": b64(zlib.crc32(data).to_bytes(4, "big"))}
        environ, _ = self.unsigned_put(data, {}, trailer_names="x-amz-checksum-crc32")
        self.assertEqual(refusal(environ), "MalformedTrailerError")
        environ, _ = self.unsigned_put(data, crc, decoded_length=len(data) + 1)
        self.assertEqual(refusal(environ), "IncompleteBody")
        environ, _ = self.unsigned_put(data, crc, body=unsigned_chunked(data, crc)[:40])
        self.assertEqual(refusal(environ), "IncompleteBody", "a truncated encoding")
        environ, _ = self.unsigned_put(data, crc, body=unsigned_chunked(data, crc).replace(b"12C\r\n", b"12G\r\n"))
        self.assertEqual(refusal(environ), "IncompleteBody", "a garbled chunk size")

    def test_a_chunked_body_with_a_checksum_header_is_checked_decoded(self):
        data = b"xyz" * 3000
        body = unsigned_chunked(data, {}, chunk=1000)
        for checksum, expected in [(data, None), (b"other", "BadDigest")]:
            headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                       "x-amz-checksum-crc32c": b64(crc32c(checksum).to_bytes(4, "big"))}
            request, _ = signed("PUT", "/bucket/key", headers, payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            self.assertEqual(refusal(environ_of(request, body=body)), expected)
        self.assertIsNone(check_body({"content-encoding": "aws-chunked",
                                      "x-amz-checksum-crc32c": b64(crc32c(data).to_bytes(4, "big"))}, body))

    def signed_put(self, data, trailer=False, chunk=8192):
        payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
        headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
        if trailer:
            headers["x-amz-trailer"] = "x-amz-checksum-crc32c"
        request, signer = signed("PUT", "/bucket/key", headers, payload=payload)
        trailers = {"x-amz-checksum-crc32c": b64(crc32c(data).to_bytes(4, "big"))} if trailer else None
        return request, signed_chunked(request, signer, data, chunk, trailers)

    def test_a_signed_streaming_body_passes(self):
        data = os.urandom(50000)
        for trailer in (False, True):
            with self.subTest(trailer=trailer):
                request, body = self.signed_put(data, trailer)
                environ = environ_of(request, body=body)
                self.assertIsNone(refusal(environ))
                self.assertEqual(environ["wsgi.input"].read(), body)

    def test_a_tampered_signed_chunk_is_refused(self):
        data = b"b" * 30000
        request, body = self.signed_put(data)
        cases = {"a changed byte": flip_first_data_byte(body),
                 "a missing chunk signature": body.replace(b";chunk-signature=", b";x=", 1)}
        first = body.index(b"chunk-signature=") + len(b"chunk-signature=")
        flipped = b"0" if body[first:first + 1] != b"0" else b"1"
        cases["a changed chunk signature"] = body[:first] + flipped + body[first + 1:]
        chunks = body.split(b"\r\n")  # size line, data, size line, data...: swap the first two chunks
        cases["chunks reordered"] = b"\r\n".join(chunks[2:4] + chunks[0:2] + chunks[4:])
        for what, tampered in cases.items():
            with self.subTest(what):
                self.assertEqual(refusal(environ_of(request, body=tampered)), "SignatureDoesNotMatch")

    def test_a_tampered_signed_trailer_is_refused(self):
        data = b"c" * 20000
        request, body = self.signed_put(data, trailer=True)
        crc = b64(crc32c(data).to_bytes(4, "big")).encode()
        other = b64(crc32c(b"other").to_bytes(4, "big")).encode()
        self.assertIsNone(refusal(environ_of(request, body=body)))
        self.assertEqual(refusal(environ_of(request, body=body.replace(crc, other))), "SignatureDoesNotMatch")
        unsigned = body[:body.index(b"x-amz-trailer-signature:")] + b"\r\n"
        self.assertEqual(refusal(environ_of(request, body=unsigned)), "SignatureDoesNotMatch")

    def test_the_s3_documentation_examples_pass(self):
        # "Transferring Payload in Multiple Chunks" and "Signature calculations
        # for trailing headers": 64 KiB and 1 KiB of "a", their signatures.
        secret = {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}.get
        at = datetime.datetime(2013, 5, 24, 0, 1, tzinfo=datetime.timezone.utc)

        def chunk(data, signature):
            return f"{len(data):x};chunk-signature={signature}\r\n".encode() + data + b"\r\n"

        plain = (chunk(b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
                 + chunk(b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497")
                 + b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n")
        trailed = (chunk(b"a" * 65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2")
                   + chunk(b"a" * 1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7")
                   + b"0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
                   b"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:"
                   b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n")
        examples = [
            (plain, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {},
             "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
             "x-amz-storage-class", "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
            (trailed, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", {"HTTP_X_AMZ_TRAILER": "x-amz-checksum-crc32c"},
             "content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
             "x-amz-storage-class;x-amz-trailer", "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"),
        ]
        for body, payload, extra, signed_headers, seed in examples:
            def environ(raw):
                return {
                    "REQUEST_METHOD": "PUT", "RAW_URI": "/examplebucket/chunkObject.txt",
                    "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw)),
                    "HTTP_HOST": "s3.amazonaws.com", "HTTP_X_AMZ_DATE": "20130524T000000Z",
                    "HTTP_X_AMZ_STORAGE_CLASS": "REDUCED_REDUNDANCY", "HTTP_X_AMZ_CONTENT_SHA256": payload,
                    "HTTP_CONTENT_ENCODING": "aws-chunked", "HTTP_X_AMZ_DECODED_CONTENT_LENGTH": "66560",
                    "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                    f"aws4_request,SignedHeaders={signed_headers},Signature={seed}", **extra}
            with self.subTest(payload):
                check_request(environ(body), secret, at)
                with self.assertRaises(Refused) as refused:
                    check_request(environ(flip_first_data_byte(body)), secret, at)
                self.assertEqual(refused.exception.code, "SignatureDoesNotMatch")

    def test_a_12_mib_part_is_checked_in_seconds(self):
        data = os.urandom(12 * 1024 * 1024)
        environ, _ = self.unsigned_put(data, {"x-amz-checksum-crc32c": b64(crc32c(data).to_bytes(4, "big"))})
        started = time.monotonic()
        self.assertIsNone(refusal(environ))
        self.assertLess(time.monotonic() - started, 8.0)


class Bodies(unittest.TestCase):
    def test_a_chunked_transfer_without_content_length_is_read_whole(self):
        body = b"sent with Transfer-Encoding: chunked " * 1000
        url = presigned_url("PUT", "/bucket/key")
        for md5, expected in [(body, None), (b"other", "BadDigest")]:
            request = AWSRequest(method="PUT", url=url, data=body,
                                 headers={"Content-MD5": b64(hashlib.md5(md5).digest())})
            environ = environ_of(request, chunked_transfer=True)
            self.assertNotIn("CONTENT_LENGTH", environ)
            self.assertEqual(refusal(environ), expected)
            self.assertEqual(environ["wsgi.input"].read(), body)
            self.assertEqual(environ["CONTENT_LENGTH"], str(len(body)))

    def test_a_short_body_is_refused(self):
        request, _ = signed("PUT", "/bucket/key", body=b"0123456789")
        environ = environ_of(request)
        environ["wsgi.input"] = io.BytesIO(b"01234")
        self.assertEqual(refusal(environ), "IncompleteBody")

    def test_an_unsigned_request_gets_only_the_body_checks(self):
        body = b"anonymous"
        environ = environ_of(AWSRequest(method="PUT", url=ENDPOINT + "/bucket/key", data=body,
                                        headers={"Content-MD5": b64(hashlib.md5(body).digest())}))
        self.assertIsNone(refusal(environ))
        environ = environ_of(AWSRequest(method="PUT", url=ENDPOINT + "/bucket/key", data=body,
                                        headers={"x-amz-checksum-crc32c": b64(crc32c(b"x").to_bytes(4, "big"))}))
        self.assertEqual(refusal(environ), "BadDigest")
        environ = environ_of(AWSRequest(method="GET", url=ENDPOINT + "/bucket/key"))
        environ["wsgi.input"] = Unreadable()
        self.assertIsNone(refusal(environ))

    def test_complete_multipart_upload_checksum_headers_are_the_objects(self):
        body = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"
        headers = {"x-amz-checksum-crc32": "AAAAAA==-1"}
        request, _ = signed("POST", "/bucket/key?uploadId=u-1", headers, body)
        self.assertIsNone(refusal(environ_of(request)))
        request, _ = signed("PUT", "/bucket/key?partNumber=1&uploadId=u-1", headers, body)
        self.assertEqual(refusal(environ_of(request)), "BadDigest")


def presigned_url(method, target, expires=300, secret=SECRET):
    request = AWSRequest(method=method, url=ENDPOINT + target)
    S3SigV4QueryAuth(Credentials(AKID, secret), "s3", "us-east-1", expires=expires).add_auth(request)
    return request.prepare().url


class Presigned(unittest.TestCase):
    def environ(self, url, body=b"", headers=None):
        return environ_of(AWSRequest(method="PUT", url=url, data=body, headers=headers or {}))

    def test_the_url_as_made_passes(self):
        url = presigned_url("PUT", "/bucket/cases/c-1/memory.lime?partNumber=3&uploadId=u-1")
        self.assertIn("X-Amz-Signature=", url)
        self.assertIsNone(refusal(self.environ(url, b"part")))

    def test_a_changed_or_added_parameter_or_key_is_refused(self):
        url = presigned_url("PUT", "/bucket/cases/c-1/memory.lime?partNumber=3&uploadId=u-1")
        for changed in [url.replace("memory.lime", "other.lime"), url.replace("partNumber=3", "partNumber=4"),
                        url.replace("uploadId=u-1", "uploadId=u-2"), url + "&x-id=UploadPart"]:
            with self.subTest(url=changed):
                self.assertEqual(refusal(self.environ(changed, b"part")), "SignatureDoesNotMatch")

    def test_an_expired_url_or_wrong_secret_is_refused(self):
        url = presigned_url("PUT", "/bucket/key", expires=60)
        self.assertEqual(refusal(self.environ(url), now() + datetime.timedelta(seconds=120)), "AccessDenied")
        url = presigned_url("PUT", "/bucket/key", secret="not-the-secret")
        self.assertEqual(refusal(self.environ(url)), "SignatureDoesNotMatch")

    def test_a_body_must_match_its_content_md5(self):
        url = presigned_url("PUT", "/bucket/key")
        body = b"part of a memory image"
        self.assertIsNone(refusal(self.environ(url, body, {"Content-MD5": b64(hashlib.md5(body).digest())})))
        self.assertEqual(refusal(self.environ(url, body, {"Content-MD5": b64(hashlib.md5(b"x").digest())})),
                         "BadDigest")

    def test_check_presigned_and_check_body_keep_their_signatures(self):
        url = urlsplit(presigned_url("PUT", "/bucket/key"))
        headers = {"host": url.netloc}
        check_presigned("PUT", url.path, url.query, headers, secret_of, now())
        with self.assertRaises(Refused) as refused:
            check_presigned("PUT", "/bucket/other", url.query, headers, secret_of, now())
        self.assertEqual(refused.exception.code, "SignatureDoesNotMatch")
        check_body({"content-md5": b64(hashlib.md5(b"abc").digest())}, b"abc")
        with self.assertRaises(Refused) as refused:
            check_body({"x-amz-checksum-sha256": b64(hashlib.sha256(b"abd").digest())}, b"abc")
        self.assertEqual(refused.exception.code, "BadDigest")


class EndToEnd(unittest.TestCase):
    """check_request in front of moto in werkzeug's server, as moto_bench
    has it, with what boto3, the Rust SDK and curl send. The bench knows the
    secret of any other key as "testing"."""

    @classmethod
    def setUpClass(cls):
        from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                                   create_backend_app)
        from werkzeug.serving import make_server

        moto = DomainDispatcherApplication(create_backend_app)
        cls.reached_moto = []

        def app(environ, start_response):
            try:
                check_request(environ, lambda key: "testing", None)
            except Refused as refused:
                start_response(f"{refused.status} {refused.code}", [("Content-Type", "application/xml")])
                return [refused.xml()]
            cls.reached_moto.append(environ.get("RAW_URI"))
            return moto(environ, start_response)

        class Quiet(MotoRequestHandler):
            def log_request(self, *args, **kwargs):
                pass

        cls.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.endpoint = f"http://127.0.0.1:{cls.server.server_port}"
        cls.s3 = cls.client("testing")
        cls.s3.create_bucket(Bucket="e2e")

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()

    @classmethod
    def client(cls, secret):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=cls.endpoint, region_name="us-east-1",
                            aws_access_key_id="AKIDE2E", aws_secret_access_key=secret,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                          signature_version="s3v4"))

    def send(self, method, target, headers, body):
        split = urlsplit(self.endpoint)
        connection = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        try:
            connection.request(method, target, body=body, headers=headers,
                               encode_chunked=not isinstance(body, bytes))
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def rust_like_put(self, key, data, checksum, digest):
        """PutObject as aws-sdk-s3 1.x sends it: STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
        body = unsigned_chunked(data, {f"x-amz-checksum-{checksum}": b64(digest)})
        request = AWSRequest(method="PUT", url=f"{self.endpoint}/e2e/{quote(key)}?x-id=PutObject", headers={
            "Content-Encoding": "aws-chunked", "Content-Length": str(len(body)),
            "x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": f"x-amz-checksum-{checksum}",
            "x-amz-sdk-checksum-algorithm": checksum.upper(), "Content-Type": "application/octet-stream"})
        Signer("testing", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "AKIDE2E").add_auth(request)
        target = urlsplit(request.url)
        return self.send("PUT", f"{target.path}?{target.query}", dict(request.headers.items()), body)

    def test_boto3_traffic_passes(self):
        body = os.urandom(100_000)
        self.s3.put_object(Bucket="e2e", Key="boto3/plain", Body=body, Metadata={"case_id": "c-1"})
        self.assertEqual(self.s3.head_object(Bucket="e2e", Key="boto3/plain")["Metadata"], {"case_id": "c-1"},
                         "an underscored header, as moto's request handler keeps it, is signed as sent")
        self.s3.put_object(Bucket="e2e", Key="boto3/md5", Body=body,
                           ContentMD5=b64(hashlib.md5(body).digest()), ChecksumAlgorithm="SHA256")
        for key in ("boto3/plain", "boto3/md5"):
            self.assertEqual(self.s3.get_object(Bucket="e2e", Key=key)["Body"].read(), body)
        listed = self.s3.list_objects_v2(Bucket="e2e", Prefix="boto3/", Delimiter="/")
        self.assertEqual(listed["KeyCount"], 2)
        upload = self.s3.create_multipart_upload(Bucket="e2e", Key="boto3/multi")["UploadId"]
        part = self.s3.upload_part(Bucket="e2e", Key="boto3/multi", UploadId=upload, PartNumber=1, Body=body)
        self.s3.complete_multipart_upload(Bucket="e2e", Key="boto3/multi", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
        self.assertEqual(self.s3.get_object(Bucket="e2e", Key="boto3/multi")["Body"].read(), body)

    def test_a_wrong_secret_is_refused_before_moto(self):
        from botocore.exceptions import ClientError

        with self.assertRaises(ClientError) as refused:
            self.client("not-testing").put_object(Bucket="e2e", Key="boto3/refused", Body=b"x")
        self.assertEqual(refused.exception.response["Error"]["Code"], "SignatureDoesNotMatch")
        self.assertFalse([uri for uri in self.reached_moto if uri.startswith("/e2e/boto3/refused")])

    def test_rust_sdk_unsigned_trailer_traffic_passes(self):
        data = os.urandom(300_000)
        for checksum, digest in [("crc32", zlib.crc32(data).to_bytes(4, "big")),
                                 ("crc32c", crc32c(data).to_bytes(4, "big")),
                                 ("sha256", hashlib.sha256(data).digest())]:
            with self.subTest(checksum):
                status, answer = self.rust_like_put(f"rust/{checksum}", data, checksum, digest)
                self.assertEqual(status, 200, answer)
                self.assertEqual(self.s3.get_object(Bucket="e2e", Key=f"rust/{checksum}")["Body"].read(), data)
        status, answer = self.rust_like_put("rust/wrong", data, "crc32", zlib.crc32(b"x").to_bytes(4, "big"))
        self.assertEqual((status, b"BadDigest" in answer), (400, True), answer)
        self.assertFalse([uri for uri in self.reached_moto if uri.startswith("/e2e/rust/wrong")])

    def test_signed_streaming_traffic_passes(self):
        data = os.urandom(40_000)
        request = AWSRequest(method="PUT", url=f"{self.endpoint}/e2e/streamed", headers={
            "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))})
        signer = Signer("testing", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "AKIDE2E")
        signer.add_auth(request)
        body = signed_chunked(request, signer, data)
        status, answer = self.send("PUT", "/e2e/streamed", dict(request.headers.items()), body)
        self.assertEqual(status, 200, answer)
        self.assertEqual(self.s3.get_object(Bucket="e2e", Key="streamed")["Body"].read(), data)
        status, answer = self.send("PUT", "/e2e/streamed", dict(request.headers.items()),
                                   flip_first_data_byte(body))
        self.assertEqual((status, b"SignatureDoesNotMatch" in answer), (403, True), answer)

    def test_curl_presigned_put_with_content_md5_passes(self):
        body = os.urandom(64_000)
        url = urlsplit(self.s3.generate_presigned_url("put_object", Params={"Bucket": "e2e", "Key": "curl/part"},
                                                      ExpiresIn=300))
        target = f"{url.path}?{url.query}"
        self.assertIn("X-Amz-Signature=", target)
        for payload, md5, expected in [(body, body, 200), (body, b"x", 400),
                                       (iter([body[:1000], body[1000:]]), body, 200)]:
            status, answer = self.send("PUT", target, {"Content-MD5": b64(hashlib.md5(md5).digest())}, payload)
            self.assertEqual(status, expected, answer)
        self.assertEqual(self.s3.get_object(Bucket="e2e", Key="curl/part")["Body"].read(), body,
                         "the chunked transfer reached moto whole")
        status, answer = self.send("PUT", target.replace("curl/part", "curl/other"), {}, body)
        self.assertEqual((status, b"SignatureDoesNotMatch" in answer), (403, True), answer)


if __name__ == "__main__":
    unittest.main()
