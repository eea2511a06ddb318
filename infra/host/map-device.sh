#!/usr/bin/env bash
# map-device.sh: the block device of an attached EBS volume, found by the
# serial number EBS gives its NVMe device ("vol" and the volume id without its
# dash), never by the device name requested at attachment, which Nitro
# instances do not honour (/dev/sdf may appear as /dev/nvme3n1).
#
# Usage: map-device.sh --volume-id vol-... [--sys DIR] [--dev DIR]
#   prints the device path (DEV/nvmeXnY) and exits 0; exits 1 when no EBS
#   device or more than one carries that serial, 2 on bad arguments.
#   --sys and --dev default to /sys and /dev (tests point them at fixtures).
set -euo pipefail

volume_id="" sys=/sys dev=/dev
usage() {
  echo "usage: map-device.sh --volume-id vol-... [--sys DIR] [--dev DIR]" >&2
  exit 2
}
while (($#)); do
  case "$1" in
    --volume-id) volume_id=${2:-}; shift 2 || usage ;;
    --sys) sys=${2:-}; shift 2 || usage ;;
    --dev) dev=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
[[ "$volume_id" =~ ^vol-([0-9a-f]{8}|[0-9a-f]{17})$ ]] || usage
want="vol${volume_id#vol-}"

found=()
shopt -s nullglob
for block in "$sys"/block/nvme*n*; do
  name=${block##*/}
  [[ "$name" =~ ^nvme[0-9]+n[0-9]+$ ]] || continue
  model=$(tr -d '\0' <"$block/device/model" 2>/dev/null | sed 's/[[:space:]]*$//' || true)
  # Instance store and other NVMe devices carry other models and serials.
  [[ "$model" == "Amazon Elastic Block Store" ]] || continue
  serial=$(tr -d '\0' <"$block/device/serial" 2>/dev/null | sed 's/[[:space:]]*$//' || true)
  [[ "$serial" == "$want" ]] && found+=("$dev/$name")
done

case ${#found[@]} in
  1) echo "${found[0]}" ;;
  0) echo "map-device.sh: no EBS NVMe device has serial $want (is $volume_id attached?)" >&2; exit 1 ;;
  *) echo "map-device.sh: several devices have serial $want: ${found[*]}" >&2; exit 1 ;;
esac
