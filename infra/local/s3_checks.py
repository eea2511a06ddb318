"""What S3 checks on a request and moto does not: the test bench's S3 refuses
what S3 refuses (infra/local/moto_bench.py puts this in front of moto).

- A pre-signed request (SigV4 query string, `X-Amz-Signature`): its signature
  must verify with the secret of its access key over the request as it
  arrives (method, path, every query parameter but the signature, the signed
  headers, `UNSIGNED-PAYLOAD`): `SignatureDoesNotMatch` (403) otherwise, so a
  URL with any parameter changed (another upload id, part number, key) is
  refused. It must not have expired (`X-Amz-Date` + `X-Amz-Expires`, at most
  seven days): `AccessDenied`, "Request has expired".
- A body sent with `Content-MD5`, or with an `x-amz-checksum-crc32`, `-sha1` or
  `-sha256` header, must match it: `BadDigest` (400) otherwise. (CRC32C and
  checksums sent in an aws-chunked trailer are left to moto.)

The algorithm is the one the SigV4 documentation gives ("Create a signed AWS
API request", "Authenticating requests: using query parameters").
"""

import base64
import datetime
import hashlib
import hmac
import zlib
from urllib.parse import parse_qsl, quote

MAX_EXPIRES = 7 * 24 * 3600


class Refused(Exception):
    """A request S3 would refuse: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def xml(self) -> bytes:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message></Error>").encode()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def presigned_signature(secret: str, method: str, raw_path: str, raw_query: str,
                        headers: dict) -> str:
    """The SigV4 signature S3 computes for a pre-signed request. `headers`
    maps lower-case names to values; `raw_path` is the path as sent."""
    params = [(k, v) for k, v in parse_qsl(raw_query, keep_blank_values=True)
              if k != "X-Amz-Signature"]
    query = dict(params)
    canonical_query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params))
    signed = query.get("X-Amz-SignedHeaders", "host").split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    canonical = "\n".join([method, raw_path, canonical_query, canonical_headers,
                           ";".join(signed), "UNSIGNED-PAYLOAD"])
    _, date, region, service, _ = query["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service),
                "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def check_presigned(method: str, raw_path: str, raw_query: str, headers: dict,
                    secret_of, now: datetime.datetime) -> None:
    """Raises Refused when S3 would refuse this pre-signed request."""
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    if "X-Amz-Signature" not in query:
        return
    try:
        access_key = query["X-Amz-Credential"].split("/")[0]
        signed_at = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        expires = int(query["X-Amz-Expires"])
    except (KeyError, ValueError):
        raise Refused(400, "AuthorizationQueryParametersError",
                      "the pre-signed request lacks or garbles a SigV4 parameter")
    if not 1 <= expires <= MAX_EXPIRES:
        raise Refused(400, "AuthorizationQueryParametersError",
                      "X-Amz-Expires must be between 1 and 604800 seconds")
    if now > signed_at + datetime.timedelta(seconds=expires):
        raise Refused(403, "AccessDenied", "Request has expired")
    secret = secret_of(access_key)
    if secret is None:
        raise Refused(403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.")
    expected = presigned_signature(secret, method, raw_path, raw_query, headers)
    if not hmac.compare_digest(expected, query["X-Amz-Signature"]):
        raise Refused(403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.")


def check_body(headers: dict, body: bytes) -> None:
    """Raises Refused when the body does not match its Content-MD5 or checksum header."""
    digests = {
        "content-md5": lambda b: base64.b64encode(hashlib.md5(b).digest()).decode(),
        "x-amz-checksum-sha256": lambda b: base64.b64encode(hashlib.sha256(b).digest()).decode(),
        "x-amz-checksum-sha1": lambda b: base64.b64encode(hashlib.sha1(b).digest()).decode(),
        "x-amz-checksum-crc32": lambda b: base64.b64encode(
            zlib.crc32(b).to_bytes(4, "big")).decode(),
    }
    if "aws-chunked" in headers.get("content-encoding", ""):
        return
    for name, digest in digests.items():
        sent = headers.get(name)
        if sent is not None and sent.strip() != digest(body):
            raise Refused(400, "BadDigest",
                          f"The {name} you specified did not match what we received.")
