#!/usr/bin/env bash
# evidence-read-only.sh: run by udev on the forensic workstation the moment a
# block device appears. Every EBS device that does not hold the running
# system (the evidence volumes attached for analysis) is made read-only at
# once, before anything can mount, scan or activate it; analyse-volume.sh sets
# and checks the flag again before it reads.
#
# Usage: evidence-read-only.sh /dev/NAME
# The device name comes from the kernel (udev's $env{DEVNAME}), never from
# the volume; anything not shaped like an EBS device name is left alone.
set -euo pipefail

device=${1:-}
[[ "$device" =~ ^/dev/(nvme[0-9]+n[0-9]+(p[0-9]+)?|xvd[a-z]{1,2}[0-9]*)$ ]] || exit 0

# The disk that holds the root file system stays writable. It is found by
# device number through /sys (findmnt may name it /dev/root), and a
# partition counts as its disk. When it cannot be found, nothing is changed:
# analyse-volume.sh sets and checks read-only itself before it reads.
disk_of() { # /sys/dev/block/MAJ:MIN or /sys/class/block/NAME -> the whole disk's name
  local sys
  sys=$(readlink -f "$1") || return 1
  [[ -d "$sys" ]] || return 1
  if [[ -f "$sys/partition" ]]; then
    basename "$(dirname "$sys")"
  else
    basename "$sys"
  fi
}
root_number=$(findmnt -n -o MAJ:MIN /) || exit 0
[[ "$root_number" =~ ^[0-9]+:[0-9]+$ ]] || exit 0
root_disk=$(disk_of "/sys/dev/block/$root_number") || exit 0
disk=$(disk_of "/sys/class/block/${device#/dev/}") || exit 0
if [[ "$disk" == "$root_disk" ]]; then
  exit 0
fi

blockdev --setro "$device"
if [[ "$(blockdev --getro "$device")" != 1 ]]; then
  logger -t ec2-forensics "evidence device $device did not become read-only" || true
  exit 1
fi
logger -t ec2-forensics "evidence device $device set read-only on arrival" || true
