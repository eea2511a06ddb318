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

# The disk that holds the root file system stays writable.
root_source=$(findmnt -n -o SOURCE /)
root_disk=$(lsblk -n -d -o PKNAME "$root_source" 2>/dev/null || true)
[[ -n "$root_disk" ]] || root_disk=$(basename "$root_source")
disk=$(lsblk -n -d -o PKNAME "$device" 2>/dev/null || true)
[[ -n "$disk" ]] || disk=$(basename "$device")
if [[ "$disk" == "$root_disk" ]]; then
  exit 0
fi

blockdev --setro "$device"
if [[ "$(blockdev --getro "$device")" != 1 ]]; then
  logger -t ec2-forensics "evidence device $device did not become read-only" || true
  exit 1
fi
logger -t ec2-forensics "evidence device $device set read-only on arrival" || true
