"""What S3 checks on a request and moto does not: the test bench's S3 refuses
what S3 refuses (infra/local/moto_bench.py puts this in front of moto).

One entry point, `check_request(environ, secret_of, now)`, takes the WSGI
environ of an S3 request and raises `Refused` (HTTP status, S3 error code,
message) for what S3 would refuse. It reads the body only when a check needs
it, and then puts the raw body back (`wsgi.input`, `CONTENT_LENGTH`) as it
came: an aws-chunked body stays encoded, moto decodes it itself. It checks:

- A header-signed request (`Authorization: AWS4-HMAC-SHA256 Credential=...,
  SignedHeaders=..., Signature=...`): the signature must verify with the
  secret of its access key (`secret_of(key)`; None: `InvalidAccessKeyId`,
  403) over the canonical request S3 builds: the method, the path as sent
  (S3 neither normalises nor encodes it again), every query parameter
  (decoded, URI-encoded again, sorted; a raw `+` is a plus, a parameter with
  no `=` has an empty value), the signed headers (lower-case names, values
  trimmed, inner runs of spaces as one) and the `x-amz-content-sha256` value
  as the payload hash: `SignatureDoesNotMatch` (403) otherwise. The
  timestamp (`x-amz-date`, else `Date`) must be within 15 minutes of now
  (`RequestTimeTooSkewed`, 403) and on the credential scope's date
  (`AuthorizationHeaderMalformed`, 400); a missing or garbled timestamp is
  `AccessDenied` (403), a garbled header `AuthorizationHeaderMalformed`.
- `x-amz-content-sha256`, which a header-signed request must have
  (`InvalidRequest`, 400): a hex digest must be the SHA-256 of the body as
  sent (`XAmzContentSHA256Mismatch`, 400; checked whenever the header is a
  hex digest). Otherwise it is `UNSIGNED-PAYLOAD`,
  `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
  or `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` (`InvalidArgument`, 400,
  for anything else). With the signed STREAMING forms every chunk's
  signature must verify, each chained to the one before from the seed (the
  Authorization signature), and with -TRAILER so must the trailer's
  `x-amz-trailer-signature`: `SignatureDoesNotMatch` otherwise.
- A pre-signed request (SigV4 query string, `X-Amz-Signature`): its signature
  must verify over the request as it arrives (method, path, every query
  parameter but the signature, the signed headers, `UNSIGNED-PAYLOAD`):
  `SignatureDoesNotMatch` (403), so a URL with any parameter changed
  (another upload id, part number, key) or added is refused. It must not
  have expired (`X-Amz-Date` + `X-Amz-Expires`, at most seven days):
  `AccessDenied`, "Request has expired". A request signed both ways is
  `InvalidArgument` (400).
- An aws-chunked body (`Content-Encoding: aws-chunked`, or a STREAMING
  payload hash) is decoded (hex size, optional `;chunk-signature=`, CRLF,
  data, CRLF, ..., a zero-size chunk, trailer lines, CRLF): a truncated or
  garbled encoding, or a decoded length other than
  `x-amz-decoded-content-length`, is `IncompleteBody` (400); a trailer that
  `x-amz-trailer` names but the body lacks, or a garbled trailer line, is
  `MalformedTrailerError` (400).
- A body sent with `Content-MD5`, or with an `x-amz-checksum-crc32`,
  `-crc32c`, `-crc64nvme`, `-sha1` or `-sha256` header or trailer, must match
  it (the decoded body when aws-chunked): `BadDigest` (400) otherwise. The
  checksum headers of CompleteMultipartUpload (POST with `uploadId`) are the
  whole object's, not the body's, and are left alone. CRC-32C (Castagnoli)
  and CRC-64/NVME are computed here in pure Python (table-driven, about a
  second for 12 MiB).
- A body sent with `Transfer-Encoding: chunked` and no Content-Length is read
  whole (the server has decoded it: `wsgi.input_terminated`); one shorter
  than its Content-Length is `IncompleteBody`.

Requests with no SigV4 at all (no Authorization header, no X-Amz-Signature)
and requests signed some other way (SigV2, SigV4a) get only the body checks;
a request whose credential scope names another service than s3 is not S3's
and is left alone.

Not checked, as a bench cannot or need not: the region of the credential
scope against the bucket's; session tokens (`X-Amz-Security-Token`) and
whether the key is active; that `host` and every `x-amz-*` header are among
the signed headers; the 8 KiB minimum of signed chunks
(`InvalidChunkSizeError`); more than one checksum algorithm on one request;
the full-object checksums of CompleteMultipartUpload; browser-form POST
uploads; a pre-signed request dated in the future.

The algorithm is the one the AWS documentation gives ("Create a signed AWS
API request"; for S3 "Authenticating Requests: Using the Authorization
Header", "... Transferring Payload in Multiple Chunks (Chunked Upload)",
"Signature calculations for trailing headers", "Authenticating requests:
using query parameters", "Checking object integrity").
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import io
import re
import zlib
from urllib.parse import quote, unquote_to_bytes, urlsplit
from xml.sax.saxutils import escape

MAX_EXPIRES = 7 * 24 * 3600
MAX_SKEW = datetime.timedelta(minutes=15)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_STREAMING = (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
_PAYLOAD_KEYWORDS = (UNSIGNED_PAYLOAD,) + _STREAMING

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(rb" {2,}")


class Refused(Exception):
    """A request S3 would refuse: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def xml(self) -> bytes:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(self.code)}</Code>'
                f"<Message>{escape(self.message)}</Message></Error>").encode()


def _same(expected: str, sent: str) -> bool:
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "replace"))


def _mismatch() -> Refused:
    return Refused(403, "SignatureDoesNotMatch",
                   "The request signature we calculated does not match the signature you provided.")


# --- checksums -----------------------------------------------------------

def _reflected_table(polynomial: int) -> list:
    """The 256-entry table of a reflected CRC with this (reflected) polynomial."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _reflected_table(0x82F63B78)            # Castagnoli
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5)  # 0xad93d23594c93659 reflected


def _reflected_crc(table: list, mask: int, data, crc: int) -> int:
    crc ^= mask
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


def crc32c(data, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from `crc`: the checksum S3
    calls CRC32C. crc32c(b"123456789") == 0xE3069283."""
    return _reflected_crc(_CRC32C_TABLE, 0xFFFFFFFF, data, crc)


def crc64nvme(data, crc: int = 0) -> int:
    """CRC-64/NVME of `data`, continuing from `crc`: the checksum S3 calls
    CRC64NVME. crc64nvme(b"123456789") == 0xAE8B14860A799888."""
    return _reflected_crc(_CRC64NVME_TABLE, 0xFFFFFFFFFFFFFFFF, data, crc)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# What each digest header or trailer holds: the base64 of the digest, a CRC
# as its big-endian bytes.
DIGESTS = {
    "content-md5": lambda b: _b64(hashlib.md5(b, usedforsecurity=False).digest()),
    "x-amz-checksum-crc32": lambda b: _b64(zlib.crc32(b).to_bytes(4, "big")),
    "x-amz-checksum-crc32c": lambda b: _b64(crc32c(b).to_bytes(4, "big")),
    "x-amz-checksum-crc64nvme": lambda b: _b64(crc64nvme(b).to_bytes(8, "big")),
    "x-amz-checksum-sha1": lambda b: _b64(hashlib.sha1(b).digest()),
    "x-amz-checksum-sha256": lambda b: _b64(hashlib.sha256(b).digest()),
}


# --- SigV4 ---------------------------------------------------------------

def _encode(value) -> str:
    """SigV4's URI encoding: everything but unreserved characters as %XX."""
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _wire(text: str) -> bytes:
    """The bytes a WSGI native string stands for (PEP 3333: latin-1)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _query_pairs(raw_query: str) -> list:
    """(name, value) of every parameter, percent-decoded; `+` stays a plus."""
    pairs = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def _query_params(raw_query: str) -> dict:
    return {name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
            for name, value in _query_pairs(raw_query)}


def canonical_query(raw_query: str, leave_out: tuple = ()) -> str:
    """Every parameter URI-encoded, sorted by name then value, but `leave_out`."""
    pairs = sorted((_encode(name), _encode(value)) for name, value in _query_pairs(raw_query))
    return "&".join(f"{name}={value}" for name, value in pairs if name not in leave_out)


def canonical_request(method: str, raw_path: str, query: str, headers: dict, signed: list,
                      payload_hash: str) -> bytes:
    """The canonical request over the request as it arrived. `headers` maps
    lower-case names to values; `query` is canonical already."""
    lines = [method.encode(), _wire(raw_path or "/"), query.encode()]
    block = b"".join(name.encode() + b":" + _SPACES.sub(b" ", _wire(headers.get(name, "")).strip(b" ")) + b"\n"
                     for name in signed)
    return b"\n".join(lines + [block, ";".join(signed).encode(), payload_hash.encode()])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    return _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")


def _signature(key: bytes, string_to_sign: str) -> str:
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _string_to_sign(timestamp: str, scope: str, canonical: bytes) -> str:
    return "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical).hexdigest()])


def presigned_signature(secret: str, method: str, raw_path: str, raw_query: str,
                        headers: dict) -> str:
    """The SigV4 signature S3 computes for a pre-signed request. `headers`
    maps lower-case names to values; `raw_path` is the path as sent."""
    query = _query_params(raw_query)
    signed = query.get("X-Amz-SignedHeaders", "host").split(";")
    canonical = canonical_request(method, raw_path, canonical_query(raw_query, ("X-Amz-Signature",)),
                                  headers, signed, UNSIGNED_PAYLOAD)
    _, date, region, service, _ = query["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    return _signature(signing_key(secret, date, region, service),
                      _string_to_sign(query["X-Amz-Date"], scope, canonical))


def check_presigned(method: str, raw_path: str, raw_query: str, headers: dict,
                    secret_of, now: datetime.datetime) -> None:
    """Raises Refused when S3 would refuse this pre-signed request."""
    query = _query_params(raw_query)
    if "X-Amz-Signature" not in query:
        return
    try:
        access_key, _, _, _, terminal = query["X-Amz-Credential"].split("/")
        signed_at = datetime.datetime.strptime(query["X-Amz-Date"], _TIMESTAMP).replace(
            tzinfo=datetime.timezone.utc)
        expires = int(query["X-Amz-Expires"])
        if terminal != "aws4_request":
            raise ValueError(terminal)
    except (KeyError, ValueError):
        raise Refused(400, "AuthorizationQueryParametersError",
                      "the pre-signed request lacks or garbles a SigV4 parameter") from None
    if not 1 <= expires <= MAX_EXPIRES:
        raise Refused(400, "AuthorizationQueryParametersError",
                      "X-Amz-Expires must be between 1 and 604800 seconds")
    if _utc(now) > signed_at + datetime.timedelta(seconds=expires):
        raise Refused(403, "AccessDenied", "Request has expired")
    secret = secret_of(access_key)
    if secret is None:
        raise Refused(403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.")
    expected = presigned_signature(secret, method, raw_path, raw_query, headers)
    if not _same(expected, query["X-Amz-Signature"]):
        raise _mismatch()


class Signing:
    """What a verified header signature leaves for the chunks after it: the
    key, timestamp and scope, and the signature the next one chains from."""

    def __init__(self, key: bytes, timestamp: str, scope: str, seed: str):
        self.key, self.timestamp, self.scope, self.previous = key, timestamp, scope, seed

    def _next(self, kind: str, hashed: str, sent) -> None:
        to_sign = "\n".join([f"{ALGORITHM}-{kind}", self.timestamp, self.scope, self.previous, hashed])
        expected = _signature(self.key, to_sign)
        if sent is None or not _same(expected, sent):
            raise _mismatch()
        self.previous = expected

    def chunk(self, data, sent) -> None:
        """Verifies a chunk's signature: its data hashed after the empty string's."""
        self._next("PAYLOAD", f"{_EMPTY_SHA256}\n{hashlib.sha256(data).hexdigest()}", sent)

    def trailer(self, trailers: dict, sent) -> None:
        """Verifies `x-amz-trailer-signature` over the other trailer lines."""
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
        self._next("TRAILER", hashlib.sha256(_wire(canonical)).hexdigest(), sent)


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _authorization_fields(authorization: str) -> dict:
    fields = {}
    for part in authorization[len(ALGORITHM):].split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def check_authorization(method: str, raw_path: str, raw_query: str, headers: dict,
                        secret_of, now: datetime.datetime):
    """Raises Refused when S3 would refuse this header-signed request's
    signature; returns the Signing its aws-chunked body's chunks chain from,
    or None when the scope is another service's (not an S3 request)."""
    fields = _authorization_fields(headers.get("authorization", ""))
    try:
        credential, signed, sent = (fields["Credential"], fields["SignedHeaders"].split(";"),
                                    fields["Signature"])
        access_key, date, region, service, terminal = credential.split("/")
        if terminal != "aws4_request" or not re.fullmatch(r"\d{8}", date) or not all(signed):
            raise ValueError(credential)
    except (KeyError, ValueError):
        raise Refused(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; it must have Credential="
                      "<key>/<date>/<region>/<service>/aws4_request, SignedHeaders= and Signature=.") from None
    if service != "s3":
        return None
    secret = secret_of(access_key)
    if secret is None:
        raise Refused(403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.")
    timestamp = headers.get("x-amz-date", "").strip()
    try:
        if timestamp:
            signed_at = datetime.datetime.strptime(timestamp, _TIMESTAMP).replace(tzinfo=datetime.timezone.utc)
        else:
            signed_at = _utc(email.utils.parsedate_to_datetime(headers.get("date", "")))
            timestamp = signed_at.astimezone(datetime.timezone.utc).strftime(_TIMESTAMP)
    except (TypeError, ValueError, IndexError):
        raise Refused(403, "AccessDenied",
                      "AWS authentication requires a valid Date or x-amz-date header") from None
    if timestamp[:8] != date:
        raise Refused(400, "AuthorizationHeaderMalformed",
                      "The authorization header is malformed; Invalid credential date. "
                      "Date is not the same as X-Amz-Date.")
    if abs(_utc(now) - signed_at) > MAX_SKEW:
        raise Refused(403, "RequestTimeTooSkewed",
                      "The difference between the request time and the current time is too large.")
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        raise Refused(400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    payload_hash = payload_hash.strip()
    if payload_hash not in _PAYLOAD_KEYWORDS and not _HEX_DIGEST.fullmatch(payload_hash):
        raise Refused(400, "InvalidArgument",
                      "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, " + ", ".join(_STREAMING)
                      + " or a valid sha256 value.")
    scope = f"{date}/{region}/{service}/aws4_request"
    key = signing_key(secret, date, region, service)
    canonical = canonical_request(method, raw_path, canonical_query(raw_query), headers, signed, payload_hash)
    expected = _signature(key, _string_to_sign(timestamp, scope, canonical))
    if not _same(expected, sent):
        raise _mismatch()
    return Signing(key, timestamp, scope, expected)


# --- bodies --------------------------------------------------------------

def _incomplete(message: str) -> Refused:
    return Refused(400, "IncompleteBody", message)


def decode_aws_chunked(raw: bytes, signing: Signing | None = None) -> tuple:
    """The data and trailers (lower-case name -> value) of an aws-chunked
    body. With `signing`, every chunk's `chunk-signature` must verify, chained
    from the seed; the trailer's signature is left to the caller."""
    view = memoryview(raw)
    parts, position, end = [], 0, len(raw)
    while True:
        line_end = raw.find(b"\r\n", position)
        if line_end < 0:
            raise _incomplete("The aws-chunked body ends inside a chunk header.")
        size_text, _, extensions = raw[position:line_end].partition(b";")
        if not _HEX_SIZE.fullmatch(size_text.strip()):
            raise _incomplete(f"The aws-chunked body has a garbled chunk size {bytes(size_text[:20])!r}.")
        size = int(size_text, 16)
        signature = None
        for extension in extensions.split(b";"):
            name, _, value = extension.partition(b"=")
            if name.strip() == b"chunk-signature":
                signature = value.strip().decode("latin-1")
        position = line_end + 2
        if position + size > end:
            raise _incomplete("The aws-chunked body ends inside a chunk.")
        data = view[position:position + size]
        position += size
        if signing is not None:
            signing.chunk(data, signature)
        if size == 0:
            break
        if raw[position:position + 2] != b"\r\n":
            raise _incomplete("A chunk of the aws-chunked body is longer than its size says.")
        position += 2
        parts.append(data)
    trailers = {}
    while position < end:
        line_end = raw.find(b"\r\n", position)
        line = raw[position:] if line_end < 0 else raw[position:line_end]
        position = end if line_end < 0 else line_end + 2
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise Refused(400, "MalformedTrailerError",
                          "The request contained trailing data that was not well-formed.")
        trailers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return b"".join(parts), trailers


def _decoded(headers: dict, raw: bytes, signing: Signing | None) -> tuple:
    """The body and trailers S3 checks digests against: an aws-chunked body
    decoded (its length and announced trailers checked), any other as sent."""
    payload_hash = headers.get("x-amz-content-sha256", "").strip()
    encodings = [e.strip().lower() for e in headers.get("content-encoding", "").split(",")]
    if payload_hash not in _STREAMING and "aws-chunked" not in encodings:
        return raw, {}
    if payload_hash not in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        signing = None
    body, trailers = decode_aws_chunked(raw, signing)
    if signing is not None and payload_hash == STREAMING_SIGNED_TRAILER:
        sent = trailers.pop("x-amz-trailer-signature", None)
        signing.trailer(trailers, sent)
    declared = headers.get("x-amz-decoded-content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise Refused(400, "InvalidArgument", "x-amz-decoded-content-length must be a number") from None
        if length != len(body):
            raise _incomplete(f"x-amz-decoded-content-length says {length} bytes; "
                              f"the aws-chunked body holds {len(body)}.")
    for name in headers.get("x-amz-trailer", "").split(","):
        name = name.strip().lower()
        if name and name not in trailers:
            raise Refused(400, "MalformedTrailerError",
                          f"The request names the trailer {name} (x-amz-trailer) but does not send it.")
    return body, trailers


def _check_digests(headers: dict, body: bytes, trailers: dict, header_checksums: bool = True) -> None:
    for name, digest in DIGESTS.items():
        sent = [trailers.get(name)]
        if header_checksums or name == "content-md5":
            sent.append(headers.get(name))
        sent = [value.strip() for value in sent if value is not None]
        if sent:
            computed = digest(body)
            if any(value != computed for value in sent):
                raise Refused(400, "BadDigest", f"The {name} you specified did not match what we received.")


def check_body(headers: dict, body: bytes) -> None:
    """Raises Refused when the body does not match its Content-MD5 or a
    checksum header or trailer (an aws-chunked body is decoded first; its
    chunk signatures are not checked here)."""
    decoded, trailers = _decoded(headers, body, None)
    _check_digests(headers, decoded, trailers)


# --- the request ---------------------------------------------------------

def request_headers(environ) -> dict:
    """The request's headers, lower-case name -> value, from a WSGI environ
    (Content-Type and Content-Length as WSGI moves them out of HTTP_*; an
    underscored name as moto's request handler preserves it)."""
    preserved = environ.get("moto.preserved_header_names") or {}
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = preserved.get(key) or key[5:].replace("_", "-")
            headers[name.lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def raw_target(environ) -> tuple:
    """The path and query string as the client sent them."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        raw = quote(environ.get("PATH_INFO", ""), safe="/-_.~")
        if environ.get("QUERY_STRING"):
            raw += "?" + environ["QUERY_STRING"]
    if "://" in raw.partition("?")[0]:  # absolute form: http://host/path?query
        parts = urlsplit(raw)
        raw = parts.path + ("?" + parts.query if parts.query else "")
    raw_path, _, raw_query = raw.partition("?")
    return raw_path or "/", raw_query


def read_body(environ) -> bytes:
    """Reads the whole body and puts it back (`wsgi.input`, `CONTENT_LENGTH`).
    A body the server decoded from Transfer-Encoding: chunked
    (`wsgi.input_terminated`) is read to its end."""
    stream = environ.get("wsgi.input")
    try:
        length = max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        length = 0
    if stream is None:
        body = b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        pieces, remaining = [], length
        while remaining > 0:
            piece = stream.read(remaining)
            if not piece:
                break
            pieces.append(piece)
            remaining -= len(piece)
        body = b"".join(pieces)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    if not environ.get("wsgi.input_terminated") and len(body) < length:
        raise _incomplete("You did not provide the number of bytes specified by the Content-Length HTTP header.")
    return body


def check_request(environ, secret_of, now: datetime.datetime | None) -> None:
    """Raises Refused when S3 would refuse this request (see the module's
    docstring). `secret_of(access_key)` is the key's secret, None for a key
    S3 does not know; `now` is the time to check dates against (None: now)."""
    now = datetime.datetime.now(datetime.timezone.utc) if now is None else _utc(now)
    headers = request_headers(environ)
    method = environ.get("REQUEST_METHOD", "GET")
    raw_path, raw_query = raw_target(environ)
    query = _query_params(raw_query)
    authorization = headers.get("authorization", "").strip()
    header_signed = authorization.startswith(ALGORITHM + " ")
    signing = None
    if "X-Amz-Signature" in query:
        if authorization:
            raise Refused(400, "InvalidArgument",
                          "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                          "Signature query string parameter or the Authorization header should be specified")
        check_presigned(method, raw_path, raw_query, headers, secret_of, now)
    elif header_signed:
        signing = check_authorization(method, raw_path, raw_query, headers, secret_of, now)
        if signing is None:
            return  # signed for another service: not an S3 request
    payload_hash = headers.get("x-amz-content-sha256", "").strip()
    encodings = [e.strip().lower() for e in headers.get("content-encoding", "").split(",")]
    hex_payload = bool(_HEX_DIGEST.fullmatch(payload_hash))
    chunked = payload_hash in _STREAMING or "aws-chunked" in encodings
    # CompleteMultipartUpload's checksum headers are the whole object's.
    header_checksums = not (method == "POST" and "uploadId" in query)
    digests = [name for name in DIGESTS if name in headers
               and (header_checksums or name == "content-md5")]
    if not (hex_payload or chunked or digests):
        return
    raw = read_body(environ)
    if hex_payload and hashlib.sha256(raw).hexdigest() != payload_hash.lower():
        raise Refused(400, "XAmzContentSHA256Mismatch",
                      "The provided 'x-amz-content-sha256' header does not match what was computed.")
    body, trailers = _decoded(headers, raw, signing)
    _check_digests(headers, body, trailers, header_checksums)
