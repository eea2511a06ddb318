#!/usr/bin/env bash
# nitro-namespace.sh: test bench only. Runs a command where /sys/block and
# /dev show a Nitro workstation's attached EBS volumes as the recorded tree
# under DIR lays them out (DIR/sys/block/nvmeXn1/device/{model,serial} and
# DIR/dev/nvmeXn1, each a disk image), so the shipped run-forensics.sh finds
# them at /sys and /dev, where it looks on EC2.
#
# Usage: unshare -m --propagation private nitro-namespace.sh DIR COMMAND...
#
# Within the private mount namespace only: /dev and /sys/block become
# overlays on the machine's own (every device and every loop device the
# kernel adds stays reachable) with the recorded entries on top. Nothing is
# written to the machine's /dev or /sys.
set -euo pipefail
shopt -s nullglob
tree=$1
shift
[[ -d "$tree/sys/block" && -d "$tree/dev" ]] || { echo "nitro-namespace.sh: $tree has no sys/block or dev" >&2; exit 2; }
# Only inside a mount namespace of its own, which `unshare --mount` made for
# this process: never over the machine's /dev. (PID 1's namespace may not be
# readable; the parent's is.)
mine=$(readlink /proc/self/ns/mnt || true)
parents=$(readlink "/proc/$PPID/ns/mnt" || true)
if [[ -z "$mine" || -z "$parents" || "$mine" == "$parents" ]]; then
  echo "nitro-namespace.sh: not in a mount namespace of its own (run it under unshare --mount)" >&2
  exit 2
fi
layers=$(mktemp -d "$tree/layers.XXXXXX")
mkdir -p "$layers"/{dev,dev.work,block,block.work}
mount -t overlay overlay -o "lowerdir=/dev,upperdir=$layers/dev,workdir=$layers/dev.work" /dev
mount -t overlay overlay -o "lowerdir=/sys/block,upperdir=$layers/block,workdir=$layers/block.work" /sys/block
# A name the machine has too (a real NVMe disk) is hidden, not written to:
# removing it from the overlay only masks it here.
for block in "$tree"/sys/block/*; do
  rm -rf "/sys/block/${block##*/}"
  cp -r "$block" /sys/block/
done
for image in "$tree"/dev/*; do
  device="/dev/${image##*/}"
  rm -f "$device"
  : >"$device"
  mount --bind "$image" "$device"
done
exec "$@"
