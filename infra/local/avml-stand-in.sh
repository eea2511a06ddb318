#!/usr/bin/env bash
# The local stack's stand-in for AVML: published at tools/avml in the local
# evidence bucket, run by capture-memory.sh on the "host" (this machine, the
# test bench's SSM agent). It takes AVML's arguments as capture-memory.sh
# passes them (`acquire --compress --source SOURCE FILE`, the source always
# explicit) and writes a fixed, recognisable image to FILE, so a test knows what the
# evidence store must end up holding. It reads no memory.
set -euo pipefail
if ! [[ $# -eq 5 && "$1" == acquire && "$2" == --compress && "$3" == --source ]] \
  || ! [[ "$4" =~ ^(/proc/kcore|/dev/crash|/dev/mem)$ ]]; then
  echo "usage: avml acquire --compress --source /proc/kcore|/dev/crash|/dev/mem FILE" >&2
  exit 2
fi
# A test of a slow capture (a host with much memory) sets
# EC2_FORENSICS_BENCH_AVML_SECONDS in the bench's environment.
delay=${EC2_FORENSICS_BENCH_AVML_SECONDS:-0}
[[ "$delay" =~ ^[0-9]{1,4}$ ]] || { echo "EC2_FORENSICS_BENCH_AVML_SECONDS is a number of seconds" >&2; exit 2; }
sleep "$delay"
{
  printf 'EMiL ec2-forensics local stack: stand-in memory image\n'
  head -c 3145728 /dev/zero | tr '\0' 'm'
} >"$5"
