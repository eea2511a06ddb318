#!/usr/bin/env python3
"""Throughput bench of infra/host/capture-memory.sh.

    cd infra/local && ../../.venv/bin/python memory_bench.py [--size-mib 1024] [--per-connection-mib-s 40]

Runs the real script, as SSM runs it on a host, against memory_front.Front
with an AVML stand-in that writes the image ("M" bytes) as fast as it can,
once per --streams value (1 and 4 unless told), and prints for each run: the
rate (image bytes over wall time), the wall time, the parts, the PUT
requests the front answered (retries included), the most PUTs in flight at
once and the most the work directory (in /dev/shm, as on a host) held at
once, sampled every 10 ms. The front limits each connection to
--per-connection-mib-s (0: no limit), as one S3 connection is limited; it
keeps no part, only each part's size, MD5 and SHA-256, against which each
run's report is checked, with the image's SHA-256 and size. The CPU columns
are the seconds of CPU the script and all it ran used, and the front (this
process) used: on a machine with few cores, a run whose CPU seconds come
near cores x wall seconds is bound by CPU, not by the front's limit.

The part size defaults to 16 MiB, acquire-memory's plan for a host of 1 GiB
(64 MiB parts with 4 streams for 64 GiB). Exit status 1 if a run fails or
its report does not match what the front stored.
"""

import argparse
import hashlib
import os
import resource
import shutil
import sys
import tempfile
import time

from memory_front import Front, run_capture, stand_in_avml

MIB = 1024 * 1024


def cpu_seconds(who) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def m_sha256(size: int) -> str:
    """The SHA-256 of `size` bytes of "M", the stand-in's image."""
    digest, block = hashlib.sha256(), b"M" * MIB
    whole, rest = divmod(size, MIB)
    for _ in range(whole):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


def mismatches(report, front, size: int, part_size: int, image_sha256: str) -> list:
    """What in the report differs from what the front stored; empty if
    nothing."""
    problems = []
    count = -(-size // part_size)
    if report["imageSize"] != size:
        problems.append(f"imageSize {report['imageSize']}, not {size}")
    if report["imageSha256"] != image_sha256:
        problems.append("imageSha256 is not the SHA-256 of the image written")
    numbers = [part["partNumber"] for part in report["parts"]]
    if numbers != list(range(1, count + 1)):
        problems.append(f"the report lists parts {numbers[:5]}..., not 1 to {count}")
    if front.stored() != list(range(1, count + 1)):
        problems.append(f"the front stored {len(front.stored())} parts, not 1 to {count}")
    sha_of_size = {}
    for part in report["parts"]:
        number, length = part["partNumber"], part["size"]
        if length != min(part_size, size - (number - 1) * part_size):
            problems.append(f"part {number}: size {length} in the report")
        if front.sizes.get(number) != length:
            problems.append(f"part {number}: the front stored {front.sizes.get(number)} bytes, the report says {length}")
        if front.md5s.get(number) != part["md5"] or part["etag"] != part["md5"]:
            problems.append(f"part {number}: MD5/ETag differ from the front's")
        if length not in sha_of_size:
            sha_of_size[length] = hashlib.sha256(b"M" * length).hexdigest()
        if front.sha256s.get(number) != sha_of_size[length]:
            problems.append(f"part {number}: the front stored other bytes than the stand-in wrote")
    return problems


def run(size: int, part_size: int, streams: int, per_connection, image_sha256: str) -> dict:
    count = -(-size // part_size)
    workdir = tempfile.mkdtemp(prefix="memory-bench-", dir="/dev/shm")
    try:
        with Front(bytes_per_second=per_connection, keep=False) as front:
            listing = "".join(f"{url}\n" for url in front.part_urls(count + 1)).encode()
            avml = stand_in_avml(f"head -c {size} /dev/zero | tr '\\0' M")
            script_cpu, front_cpu = cpu_seconds(resource.RUSAGE_CHILDREN), cpu_seconds(resource.RUSAGE_SELF)
            capture = run_capture(front, avml, listing, part_size=part_size, workdir=workdir,
                                  streams=streams, sample=True, timeout=3600)
            script_cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - script_cpu
            front_cpu = cpu_seconds(resource.RUSAGE_SELF) - front_cpu
            problems = []
            if capture.code != 0:
                problems.append(f"exit {capture.code}: {capture.stderr.strip()[-500:]}")
            else:
                problems = mismatches(capture.report, front, size, part_size, image_sha256)
            return {
                "streams": streams,
                "rate": size / MIB / capture.seconds,
                "seconds": capture.seconds,
                "parts": len(front.stored()),
                "puts": front.puts,
                "in_flight": front.peak_in_flight,
                "peak": capture.peak_bytes / MIB,
                "bound": streams * part_size / MIB,
                "script_cpu": script_cpu,
                "front_cpu": front_cpu,
                "problems": problems,
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the image's size (MiB)")
    parser.add_argument("--per-connection-mib-s", type=float, default=40,
                        help="each connection's limit at the front (MiB/s; 0: none)")
    parser.add_argument("--part-mib", type=int, default=16, help="--part-size of the script (MiB, at least 5)")
    parser.add_argument("--streams", default="1,4", help="the --streams values to run, comma-separated")
    args = parser.parse_args()
    size, part_size = args.size_mib * MIB, args.part_mib * MIB
    per_connection = args.per_connection_mib_s * MIB if args.per_connection_mib_s > 0 else None
    streams_values = [int(value) for value in args.streams.split(",")]
    if not os.path.isdir("/dev/shm"):
        print("memory_bench: no /dev/shm on this machine", file=sys.stderr)
        return 1

    print(f"image {args.size_mib} MiB ({size} bytes), part size {args.part_mib} MiB, "
          f"front limit per connection "
          f"{f'{args.per_connection_mib_s:g} MiB/s' if per_connection else 'none'}, "
          f"streams {', '.join(map(str, streams_values))}, work directory in /dev/shm, "
          f"{os.cpu_count()} CPUs")
    started = time.monotonic()
    image_sha256 = m_sha256(size)
    print(f"(the image's SHA-256, computed here for the check, took {time.monotonic() - started:.1f} s)")
    print()
    header = ("streams", "MiB/s", "wall s", "parts", "PUTs", "in flight", "peak shm MiB",
              "bound MiB", "script CPU s", "front CPU s")
    print("  ".join(f"{name:>12}" for name in header))
    failed = False
    for streams in streams_values:
        result = run(size, part_size, streams, per_connection, image_sha256)
        print("  ".join(f"{value:>12}" for value in (
            result["streams"], f"{result['rate']:.1f}", f"{result['seconds']:.2f}", result["parts"],
            result["puts"], result["in_flight"], f"{result['peak']:.1f}", f"{result['bound']:.0f}",
            f"{result['script_cpu']:.1f}", f"{result['front_cpu']:.1f}")), flush=True)
        if result["peak"] > result["bound"] + 1 / 16:
            result["problems"].append(f"the work directory held {result['peak']:.1f} MiB, "
                                      f"more than {streams} x the part size")
        for problem in result["problems"]:
            print(f"    FAILED: {problem}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
