"""A local stand-in for the S3 endpoints capture-memory.sh talks to.

Test bench only (test_capture_memory.py, memory_bench.py): moto is too slow
to take a gigabyte of memory image in a throughput bench, and the tests need
faults moto cannot make. Over HTTPS on 127.0.0.1 (a free port, the bench
certificate of bench_tls.tls_files(<repo>/target/bench-tls)) it answers:

- GET /objects/<name>: the bytes published under that name (the AVML
  stand-in, the part list), as the evidence bucket answers a pre-signed GET.
- PUT /parts/<n> (n from 1 to 10,000): UploadPart of part n. The body is
  read in chunks, at most `bytes_per_second` per connection when given
  (curl makes one PUT per connection here, so that is each upload's rate).
  As S3 does, it refuses a PUT without Content-Length (411
  MissingContentLength), without Content-MD5 (400 InvalidRequest, as a
  bucket with Object Lock does), with a Content-MD5 that is not a base64
  MD5 (400 InvalidDigest) or that the body does not match (400 BadDigest);
  otherwise it stores the part (a later PUT of the same part replaces it,
  as in S3) and answers 200 with ETag "<hex MD5>".

Faults, decided after the body is read: `fail_first={n: k}` answers the
first k PUTs of part n with 500 InternalError, `always_fail={n}` answers
every PUT of part n so.

What it saw: `attempts[n]` (PUTs of part n, refused ones included), `puts`
(all PUTs), `peak_in_flight` (the most PUTs being served at once), and of
each stored part its size, MD5 and SHA-256 (`sizes`, `md5s`, `sha256s`)
and, with keep=True, its bytes (`parts`; image() and image_sha256() join
them in part order). With keep=False each body is hashed as it arrives and
dropped, so a bench of a large image holds no image in memory.

run_capture() runs the real infra/host/capture-memory.sh against a Front, as
SSM runs it on a host (trusting the bench CA through CURL_CA_BUNDLE), with an
AVML stand-in from stand_in_avml(), and can sample how much its work
directory holds while it runs.
"""

import base64
import binascii
import hashlib
import http.server
import json
import os
import re
import signal
import ssl
import stat
import subprocess
import threading
import time

from bench_tls import tls_files

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TLS_DIR = os.path.join(REPO, "target", "bench-tls")
CA_FILE = os.path.join(TLS_DIR, "ca.pem")
SCRIPT = os.path.join(REPO, "infra", "host", "capture-memory.sh")
CHUNK = 64 * 1024
MAX_PARTS = 10_000


class Front:
    """The stand-in, serving from __enter__ to __exit__."""

    def __init__(self, bytes_per_second=None, fail_first=None, always_fail=None, keep=True):
        self.bytes_per_second = bytes_per_second
        self.fail_first = dict(fail_first or {})
        self.always_fail = set(always_fail or ())
        self.keep = keep
        self.objects = {}
        self.parts = {}
        self.sizes = {}
        self.md5s = {}
        self.sha256s = {}
        self.attempts = {}
        self.puts = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.lock = threading.Lock()
        self.port = None
        self._server = None
        self._thread = None

    def __enter__(self):
        cert, key = tls_files(TLS_DIR)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = _Server(("127.0.0.1", 0), _Handler, context, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        return False

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def publish(self, name: str, data: bytes) -> str:
        """Serves `data` at GET /objects/<name>; answers its URL."""
        with self.lock:
            self.objects[name] = bytes(data)
        return f"{self.base_url}/objects/{name}"

    def part_urls(self, count: int) -> list:
        """The UploadPart URLs of parts 1 to `count`."""
        return [f"{self.base_url}/parts/{n}" for n in range(1, count + 1)]

    def stored(self) -> list:
        """The numbers of the parts stored, in order."""
        with self.lock:
            return sorted(self.sizes)

    def image(self) -> bytes:
        """The stored parts joined in part order (keep=True only)."""
        if not self.keep:
            raise RuntimeError("the front was made with keep=False: part bodies were not kept")
        with self.lock:
            return b"".join(self.parts[n] for n in sorted(self.parts))

    def image_sha256(self) -> str:
        return hashlib.sha256(self.image()).hexdigest()

    # Called by the handler.

    def _begin(self, number: int) -> int:
        """Counts a PUT of part `number`; answers which attempt it is."""
        with self.lock:
            self.puts += 1
            self.attempts[number] = self.attempts.get(number, 0) + 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.attempts[number]

    def _end(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def _fails(self, number: int, attempt: int) -> bool:
        return number in self.always_fail or attempt <= self.fail_first.get(number, 0)

    def _store(self, number: int, body, size: int, md5: str, sha256: str) -> None:
        with self.lock:
            if self.keep:
                self.parts[number] = body
            self.sizes[number] = size
            self.md5s[number] = md5
            self.sha256s[number] = sha256


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context, front):
        self.context = context
        self.front = front
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake is made here, in the connection's own thread, so
        # a slow client holds up no other.
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            connection.close()

    def handle_error(self, request, client_address):
        # A client that goes away mid-request (a killed upload) is not the
        # bench's error; the tests judge what was stored.
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so that curl's "Expect: 100-continue" is answered at once
    # (under HTTP/1.0 curl waits a second before it sends each part).
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_GET(self):
        match = re.fullmatch(r"/objects/([^/?]+)", self.path)
        with self.server.front.lock:
            data = self.server.front.objects.get(match.group(1)) if match else None
        if data is None:
            self._error(404, "NoSuchKey", "The specified key does not exist.")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        front = self.server.front
        match = re.fullmatch(r"/parts/([0-9]{1,5})", self.path)
        number = int(match.group(1)) if match else 0
        if not 1 <= number <= MAX_PARTS:
            self.close_connection = True
            self._error(404, "NoSuchUpload", "No part URL at this path.")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
            return
        attempt = front._begin(number)
        try:
            self._put_part(front, number, attempt, int(length))
        finally:
            front._end()

    def _put_part(self, front, number: int, attempt: int, length: int) -> None:
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        chunks = [] if front.keep else None
        received = 0
        started = time.monotonic()
        while received < length:
            chunk = self.rfile.read(min(CHUNK, length - received))
            if not chunk:
                self.close_connection = True
                return  # the client went away; nothing is stored
            received += len(chunk)
            md5.update(chunk)
            sha256.update(chunk)
            if chunks is not None:
                chunks.append(chunk)
            if front.bytes_per_second:
                # Keeps this connection under its rate: the bytes read so far
                # may not arrive sooner than that rate allows.
                ahead = received / front.bytes_per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        given = self.headers.get("Content-MD5")
        if given is None:
            self._error(400, "InvalidRequest",
                        "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Part requests with Object Lock parameters")
            return
        try:
            digest = base64.b64decode(given.strip(), validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != 16:
            self._error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
            return
        if digest != md5.digest():
            self._error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
            return
        if front._fails(number, attempt):
            self._error(500, "InternalError", "We encountered an internal error. Please try again.")
            return
        front._store(number, b"".join(chunks) if chunks is not None else None,
                     received, md5.hexdigest(), sha256.hexdigest())
        self.send_response(200)
        self.send_header("ETag", f'"{md5.hexdigest()}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _error(self, status: int, code: str, message: str) -> None:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def stand_in_avml(writer: str) -> bytes:
    """A bash script that takes AVML's arguments only as capture-memory.sh
    passes them (`acquire --compress --source SOURCE FILE`, SOURCE one of
    /proc/kcore, /dev/crash, /dev/mem; exit 2 otherwise) and writes to FILE
    what the shell command `writer` prints. It reads no memory."""
    return f"""#!/usr/bin/env bash
# AVML stand-in of the capture-memory tests and bench.
set -eu
if ! [[ $# -eq 5 && "$1" == acquire && "$2" == --compress && "$3" == --source ]] \\
  || ! [[ "$4" =~ ^(/proc/kcore|/dev/crash|/dev/mem)$ ]]; then
  echo "usage: avml acquire --compress --source /proc/kcore|/dev/crash|/dev/mem FILE" >&2
  exit 2
fi
{writer} >"$5"
""".encode()


def folder_bytes(folder: str) -> int:
    """The total size of the regular files under `folder` (files that go
    while it is counted count as empty)."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(parent, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


class Sampler:
    """Samples folder_bytes(folder) every `interval` seconds from start to
    stop; `peak` is the most it saw."""

    def __init__(self, folder: str, interval: float = 0.01):
        self.folder, self.interval = folder, interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.peak = max(self.peak, folder_bytes(self.folder))
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()


class Capture:
    """How one run of capture-memory.sh ended."""

    def __init__(self, code, stdout, stderr, seconds, peak_bytes, samples):
        self.code, self.stdout, self.stderr = code, stdout, stderr
        self.seconds, self.peak_bytes, self.samples = seconds, peak_bytes, samples

    @property
    def report(self):
        """The JSON of the last line of standard output, if the run succeeded."""
        lines = self.stdout.strip().splitlines()
        return json.loads(lines[-1]) if self.code == 0 and lines else None


def run_capture(front: Front, avml: bytes, part_list: bytes, *, part_size: int, workdir: str,
                streams=None, source="/proc/kcore", part_list_sha256=None, sample=False,
                timeout=120.0) -> Capture:
    """Runs capture-memory.sh with `avml` and `part_list` published on
    `front` (the part list's SHA-256 given as `part_list_sha256`, else its
    own). The script and all it starts run in a session of their own, ended
    when it is done (or has run `timeout` seconds: then the code is None)."""
    avml_url = front.publish("avml", avml)
    list_url = front.publish("parts.list", part_list)
    args = ["bash", SCRIPT,
            "--avml-url", avml_url, "--avml-sha256", hashlib.sha256(avml).hexdigest(),
            "--part-size", str(part_size),
            "--part-list-url", list_url,
            "--part-list-sha256", part_list_sha256 or hashlib.sha256(part_list).hexdigest(),
            "--upload-id", "bench-upload", "--workdir", workdir]
    if streams is not None:
        args += ["--streams", str(streams)]
    if source is not None:
        args += ["--source", source]
    env = dict(os.environ, CURL_CA_BUNDLE=CA_FILE)
    sampler = Sampler(workdir) if sample else None
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               start_new_session=True)
    if sampler:
        sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        code = None
    finally:
        seconds = time.monotonic() - started
        if sampler:
            sampler.stop()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return Capture(code, stdout.decode(errors="replace"), stderr.decode(errors="replace"), seconds,
                   sampler.peak if sampler else None, sampler.samples if sampler else 0)
