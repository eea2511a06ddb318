"""Tests of infra/host/capture-memory.sh, the script that streams a host's
memory to the evidence store.

    cd infra/local && ../../.venv/bin/python -m unittest test_capture_memory -v

The real script runs, as SSM runs it on a host, against memory_front.Front
(the S3 endpoints it uses: pre-signed GETs of AVML and of the part list,
pre-signed UploadPart PUTs checked by Content-MD5), trusting the bench CA
through CURL_CA_BUNDLE, with a fresh --workdir each time. AVML is a stand-in
that accepts only the arguments capture-memory.sh must pass and writes a
known image: the counter pattern (`seq 1 99999999 | head -c N`, so a part
out of place changes the image) or N bytes of "M".
"""

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from memory_front import CA_FILE, Front, run_capture, stand_in_avml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part, the script's smallest --part-size
SLACK = 64 * 1024  # the work directory's small files beside its parts
SOURCES = ("/proc/kcore", "/dev/crash", "/dev/mem")


def counter_image(size: int) -> bytes:
    """What `seq 1 99999999 | head -c size` prints."""
    lines, length, n = [], 0, 1
    while length < size:
        line = f"{n}\n"
        lines.append(line)
        length += len(line)
        n += 1
    return "".join(lines).encode()[:size]


def counter_avml(size: int) -> bytes:
    return stand_in_avml(f"seq 1 99999999 | head -c {size}")


def fill_avml(size: int) -> bytes:
    return stand_in_avml(f"head -c {size} /dev/zero | tr '\\0' M")


def part_list(urls) -> bytes:
    return "".join(f"{url}\n" for url in urls).encode()


class CaptureMemoryTest(unittest.TestCase):
    def setUp(self):
        parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.workdir = tempfile.mkdtemp(prefix="capture-memory-test-", dir=parent)
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

    def capture(self, front, avml, urls=None, **options):
        listing = part_list(urls if urls is not None else front.part_urls(20))
        run = run_capture(front, avml, listing, part_size=PART, workdir=self.workdir,
                          timeout=options.pop("timeout", 60), **options)
        self.assertIsNotNone(run.code, f"capture-memory.sh did not end; stderr: {run.stderr}")
        # Whatever the outcome, the script takes its work directory with it.
        self.assertEqual(glob.glob(os.path.join(self.workdir, "ec2-forensics-memory.*")), [])
        return run

    def assert_report_matches(self, run, front, image_size, image_sha256, streams, source):
        self.assertEqual(run.code, 0, run.stderr)
        report = run.report
        self.assertEqual(report["imageSize"], image_size)
        self.assertEqual(report["imageSha256"], image_sha256)
        self.assertEqual(report["avmlSha256"], hashlib.sha256(front.objects["avml"]).hexdigest())
        self.assertEqual(report["partSize"], PART)
        self.assertEqual(report["streams"], streams)
        self.assertEqual(report["source"], source)
        count = -(-image_size // PART)
        self.assertEqual([part["partNumber"] for part in report["parts"]], list(range(1, count + 1)))
        self.assertEqual(front.stored(), list(range(1, count + 1)))
        for part in report["parts"]:
            number = part["partNumber"]
            self.assertEqual(part["size"], front.sizes[number])
            self.assertEqual(part["size"], min(PART, image_size - (number - 1) * PART))
            self.assertEqual(part["md5"], front.md5s[number])
            self.assertEqual(part["etag"], front.md5s[number])
        return report

    def test_image_arrives_whole_in_order_over_parallel_streams(self):
        size = 23 * MIB + 17
        image = counter_image(size)
        with Front(bytes_per_second=20 * MIB) as front:
            run = self.capture(front, counter_avml(size), streams=4, source="/proc/kcore")
            self.assertEqual(front.image(), image)
        report = self.assert_report_matches(run, front, size, hashlib.sha256(image).hexdigest(),
                                            4, "/proc/kcore")
        self.assertEqual(len(report["parts"]), 5)
        self.assertIn(report["source"], SOURCES)
        self.assertGreater(front.peak_in_flight, 1, "the parts were not uploaded in parallel")
        self.assertEqual(front.puts, 5)

    def test_buffer_holds_at_most_streams_parts(self):
        # 13 parts, 4 at a time, each PUT taking a second: the buffer fills.
        size = 12 * PART + 1000
        with Front(bytes_per_second=PART, keep=False) as front:
            run = self.capture(front, fill_avml(size), streams=4, sample=True)
        self.assert_report_matches(run, front, size, hashlib.sha256(b"M" * size).hexdigest(),
                                   4, "/proc/kcore")
        self.assertGreater(run.samples, 100)
        self.assertLessEqual(run.peak_bytes, 4 * PART + SLACK)
        self.assertGreater(run.peak_bytes, 3 * PART, "the buffer never filled: the bound was not tested")
        self.assertEqual(front.peak_in_flight, 4)

    def test_buffer_holds_one_part_with_one_stream(self):
        size = 2 * PART + 1000
        with Front(bytes_per_second=4 * MIB, keep=False) as front:
            run = self.capture(front, fill_avml(size), streams=1, sample=True)
        self.assert_report_matches(run, front, size, hashlib.sha256(b"M" * size).hexdigest(),
                                   1, "/proc/kcore")
        self.assertGreater(run.samples, 100)
        self.assertLessEqual(run.peak_bytes, PART + SLACK)
        self.assertGreater(run.peak_bytes, PART // 2)
        self.assertEqual(front.peak_in_flight, 1)

    def test_part_failing_twice_is_retried(self):
        size = 2 * PART + 4321
        image = counter_image(size)
        with Front(fail_first={2: 2}) as front:
            run = self.capture(front, counter_avml(size), streams=4)
            self.assertEqual(front.image(), image)
        self.assert_report_matches(run, front, size, hashlib.sha256(image).hexdigest(),
                                   4, "/proc/kcore")
        self.assertEqual(front.attempts, {1: 1, 2: 3, 3: 1})

    def test_part_always_failing_fails_the_capture(self):
        # Part 1 never goes through; the other stream uploads a part a
        # second while part 1 is tried 5 times (1 + 2 + 4 + 8 s apart). Then
        # the script stops reading the image, well before its 30 parts.
        # A list long enough for the whole image, so that running out of
        # part URLs (exit 5) cannot come before part 1's last attempt on a
        # slow machine: the failure this test names is the upload's.
        size = 30 * PART
        with Front(bytes_per_second=PART, always_fail={1}, keep=False) as front:
            run = self.capture(front, fill_avml(size), urls=front.part_urls(40), streams=2)
        self.assertEqual(run.code, 6, run.stderr)
        self.assertIn("part 1: not uploaded after 5 attempts", run.stderr)
        self.assertIsNone(run.report)
        self.assertEqual(front.attempts[1], 5)
        self.assertNotIn(1, front.stored())
        self.assertLess(len(front.attempts), 30, "the whole image was read despite the failure")
        self.assertLess(run.seconds, 40)

    def test_part_list_with_another_sha256_is_not_used(self):
        with Front() as front:
            listing = part_list(front.part_urls(4))
            tampered = part_list(front.part_urls(3) + ["https://127.0.0.1:1/parts/4"])
            for name, urls, given in (
                ("wrong --part-list-sha256", front.part_urls(4), hashlib.sha256(b"another list").hexdigest()),
                ("list changed after it was hashed", tampered, hashlib.sha256(listing).hexdigest()),
            ):
                with self.subTest(name):
                    run = self.capture(front, counter_avml(PART + 1), urls, part_list_sha256=given)
                    self.assertEqual(run.code, 4, run.stderr)
                    self.assertIn("the part list download does not have SHA-256", run.stderr)
                    self.assertEqual(front.puts, 0)

    def test_part_list_with_http_url_is_refused(self):
        with Front() as front:
            urls = front.part_urls(3)
            urls[1] = urls[1].replace("https://", "http://")
            run = self.capture(front, counter_avml(PART + 1), urls)
        self.assertEqual(run.code, 2, run.stderr)
        self.assertIn("not an https URL", run.stderr)
        self.assertEqual(front.puts, 0)

    def test_image_larger_than_part_list_fails(self):
        size = 2 * PART + 1000
        with Front() as front:
            run = self.capture(front, counter_avml(size), front.part_urls(2), streams=4)
        self.assertEqual(run.code, 5, run.stderr)
        self.assertIn("the image needs more than 2 parts", run.stderr)
        self.assertLessEqual(front.puts, 2)
        self.assertLessEqual(set(front.attempts), {1, 2})

    def test_a_failed_capture_stops_its_uploads_at_once(self):
        # Parts 1 and 2 are on their way (2.5 s each at 2 MiB/s) when part 3
        # shows the image is larger than the list: the script ends, and so
        # do its uploads; neither part is stored afterwards.
        size = 2 * PART + 1000
        with Front(bytes_per_second=2 * MIB) as front:
            run = self.capture(front, counter_avml(size), front.part_urls(2), streams=4)
            self.assertEqual(run.code, 5, run.stderr)
            self.assertLess(run.seconds, 2.0, "the script and everything it ran ended at once")
            time.sleep(3)
            self.assertEqual(front.stored(), [], "an upload outlived the failed capture")

    def test_avml_that_never_opens_its_output_fails_the_capture_without_a_hang(self):
        # An AVML that exits at once (wrong architecture, refused argument)
        # never opens the FIFO the script reads: the script must not wait
        # for it forever, and nothing is uploaded.
        with Front() as front:
            run = self.capture(front, b"#!/usr/bin/env bash\nexit 2\n", timeout=20)
        self.assertEqual(run.code, 7, run.stderr)
        self.assertIn("AVML failed (exit 2)", run.stderr)
        self.assertEqual(front.puts, 0)

    def test_avml_that_writes_nothing_fails_the_capture(self):
        with Front() as front:
            run = self.capture(front, stand_in_avml("printf ''"), timeout=20)
        self.assertEqual(run.code, 7, run.stderr)
        self.assertIn("AVML wrote no image", run.stderr)
        self.assertEqual(front.puts, 0)

    def test_a_download_that_fails_has_its_own_exit_code(self):
        # curl's own codes (7: no connection) would read as "AVML failed".
        with Front() as front:
            listing = part_list(front.part_urls(2))
            avml = counter_avml(10)
            front.publish("avml", avml)
            args = ["bash", os.path.join(ROOT, "infra/host/capture-memory.sh"),
                    "--avml-url", "https://127.0.0.1:1/objects/avml",
                    "--avml-sha256", hashlib.sha256(avml).hexdigest(), "--part-size", str(PART),
                    "--part-list-url", front.publish("parts.list", listing),
                    "--part-list-sha256", hashlib.sha256(listing).hexdigest(),
                    "--upload-id", "test-upload", "--source", "/dev/crash", "--workdir", self.workdir]
            done = subprocess.run(args, capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, CURL_CA_BUNDLE=CA_FILE))
        self.assertEqual(done.returncode, 8, done.stderr)
        self.assertIn("the AVML download failed", done.stderr)
        self.assertEqual(front.puts, 0)

    def test_source_given_reaches_avml(self):
        size = PART + 99
        image = counter_image(size)
        with Front() as front:
            run = self.capture(front, counter_avml(size), streams=2, source="/dev/mem")
            self.assertEqual(front.image(), image)
        report = self.assert_report_matches(run, front, size, hashlib.sha256(image).hexdigest(),
                                            2, "/dev/mem")
        self.assertEqual(report["source"], "/dev/mem")

    def test_stand_in_refuses_other_arguments(self):
        # The stand-in's check is what makes the tests above show that the
        # script passes an explicit source.
        script = os.path.join(self.workdir, "avml")
        with open(script, "wb") as f:
            f.write(counter_avml(10))
        out = os.path.join(self.workdir, "image")
        for args in (["acquire", "--compress", out],
                     ["acquire", out],
                     ["acquire", "--compress", "--source", "/proc/self/mem", out],
                     ["acquire", "--source", "/proc/kcore", "--compress", out]):
            with self.subTest(args=args):
                done = subprocess.run(["bash", script, *args], capture_output=True)
                self.assertEqual(done.returncode, 2)
                self.assertFalse(os.path.exists(out))
        done = subprocess.run(["bash", script, "acquire", "--compress", "--source", "/dev/crash", out],
                              capture_output=True)
        self.assertEqual(done.returncode, 0, done.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), counter_image(10))


if __name__ == "__main__":
    unittest.main()
