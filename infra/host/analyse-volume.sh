#!/usr/bin/env bash
# analyse-volume.sh: offline triage of one evidence volume, never writing to it.
#
# Usage: analyse-volume.sh --device PATH --volume-id vol-... --out DIR
#                          [--rules FILE.yar] [--recent-days N]
#
# PATH is a block device (the evidence volume attached to the forensic
# instance) or an image file. A block device is made read-only
# (`blockdev --setro`) and checked before anything reads it; an image file is
# only ever opened for reading. The Sleuth Kit reads the file systems directly
# (every partition `mmls` finds, or the whole device, and every linear LVM
# logical volume, located through the PV's own metadata); only a file system it
# cannot read (XFS) is mounted, read-only, without journal replay (root only).
#
# Writes, under DIR (which must not exist or be empty):
#   findings.json  {"volumeId", "device", "readOnly", "deviceSha256Before",
#                   "deviceSha256After", "unchanged", "partitions": [offsets],
#                   "lvm": [{"volumeGroup", "logicalVolume", "offset", "status"}],
#                   "mounted": [{"offset", "type", "options"}],
#                   "indicators": [{"kind", "path", "detail"}], "files": [...],
#                   "tools": {...}}
#   timeline.csv   the mactime timeline of every file (UTC, ISO dates)
#   body.txt       the fls body file the timeline is made from
#   files/NNNN     the extracted triage files, named by number; findings.json
#                  maps each to its path in the file system and its SHA-256
# Uploading is a separate stage: this script needs no network and no credentials.
# Every value from the volume is data: file names reach the shell only as
# arguments, and JSON is written by jq.
set -euo pipefail
umask 077

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
device="" volume_id="" out="" rules="$here/rules/crypto-mining.yar" recent_days=30

usage() {
  echo "usage: analyse-volume.sh --device PATH --volume-id vol-... --out DIR [--rules FILE] [--recent-days N]" >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --device) device=${2:-}; shift 2 || usage ;;
    --volume-id) volume_id=${2:-}; shift 2 || usage ;;
    --out) out=${2:-}; shift 2 || usage ;;
    --rules) rules=${2:-}; shift 2 || usage ;;
    --recent-days) recent_days=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
[[ -n "$device" && -n "$volume_id" && -n "$out" ]] || usage
[[ "$volume_id" =~ ^vol-[0-9a-f]{8,17}$ ]] || { echo "analyse-volume.sh: $volume_id is not a volume id" >&2; exit 2; }
[[ "$recent_days" =~ ^[0-9]{1,4}$ ]] || { echo "analyse-volume.sh: --recent-days is a number of days" >&2; exit 2; }
[[ -b "$device" || -f "$device" ]] || { echo "analyse-volume.sh: $device is neither a block device nor a file" >&2; exit 2; }
[[ -r "$rules" ]] || { echo "analyse-volume.sh: no YARA rules at $rules" >&2; exit 2; }
if [[ -e "$out" && -n "$(ls -A "$out")" ]]; then
  echo "analyse-volume.sh: $out is not empty" >&2
  exit 2
fi
mkdir -p "$out/files"

# 1. Read-only before anything reads the device.
if [[ -b "$device" ]]; then
  blockdev --setro "$device"
  if [[ "$(blockdev --getro "$device")" != 1 ]]; then
    echo "analyse-volume.sh: $device did not become read-only; nothing was read" >&2
    exit 1
  fi
  read_only="blockdev --setro, verified with blockdev --getro"
else
  read_only="image file, opened for reading only"
fi

# 2. The device's hash before.
before=$(sha256sum <"$device" | cut -d' ' -f1)

# 3. File systems: every allocated partition, or the whole device.
offsets=()
if mmls -a "$device" >"$out/partitions.txt" 2>/dev/null; then
  while read -r start; do offsets+=("$start"); done < <(
    awk '$1 ~ /^[0-9]+:$/ && $3 ~ /^[0-9]+$/ && $0 !~ /Unallocated|Primary Table|Extended/ { print $3 + 0 }' "$out/partitions.txt")
fi
((${#offsets[@]})) || offsets=(0)

# LVM. The Sleuth Kit does not read LVM, and activating a volume group would
# write to the system's device-mapper and may touch the metadata. Instead a
# physical volume (a partition's start, or the whole device) is read through
# its own on-disk text metadata: the newest copy (highest seqno) in its first
# MiB names, for each logical volume, where its extents lie; each linear
# logical volume on this PV becomes one more file system offset. Other
# layouts (several segments, striped, on other PVs) are listed, not read.
: >"$out/lvm.jsonl"
lvm_offsets=()
for start in "${offsets[@]}"; do
  label="" pv_uuid=""
  for sector in 0 1 2 3; do
    header=$(dd if="$device" bs=512 skip=$((start + sector)) count=1 status=none | head -c 64 | tr -c '[:alnum:] ' '.')
    if [[ "${header:0:8}" == LABELONE && "${header:24:8}" == "LVM2 001" ]]; then
      label=$sector pv_uuid=${header:32:32}
      break
    fi
  done
  [[ -n "$label" ]] || continue
  dd if="$device" bs=512 skip="$start" count=2048 status=none | tr '\000' '\036' | awk -v RS='\036' -v pvuuid="$pv_uuid" -v base="$start" '
    /seqno[ \t]*=/ {
      n = $0; sub(/.*seqno[ \t]*=[ \t]*/, "", n); sub(/[^0-9].*/, "", n)
      if (n + 0 > best) { best = n + 0; text = $0 }
    }
    END {
      if (text == "") exit
      lines = split(text, l, "\n"); depth = 0; inlist = 0
      for (i = 1; i <= lines; i++) {
        line = l[i]; sub(/#.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
        if (line == "") continue
        if (inlist) {
          if (line ~ /^\]/) { inlist = 0; continue }
          gsub(/[",]/, " ", line); split(line, a, " ")
          if (!(lv in spv)) { spv[lv] = a[1]; sext[lv] = a[2] }
          continue
        }
        if (line ~ /\{$/) { name = line; sub(/[ \t]*\{$/, "", name); stack[++depth] = name; if (depth == 1) vg = name; continue }
        if (line == "}") { depth--; continue }
        if (line !~ /=/) continue
        key = line; sub(/[ \t]*=.*/, "", key); val = line; sub(/^[^=]*=[ \t]*/, "", val); gsub(/"/, "", val)
        if (depth == 1 && key == "extent_size") extent = val + 0
        if (depth == 3 && stack[2] == "physical_volumes") {
          if (key == "id") { id = val; gsub(/-/, "", id); pvid[stack[3]] = id }
          if (key == "pe_start") pestart[stack[3]] = val + 0
        }
        if (depth >= 3 && stack[2] == "logical_volumes") {
          lv = stack[3]; lvs[lv] = 1
          if (depth == 3 && key == "segment_count") segs[lv] = val + 0
          if (depth == 4 && key == "type") type[lv] = val
          if (depth == 4 && key == "stripe_count") stripes[lv] = val + 0
          if (depth == 4 && key == "stripes") {
            if (val ~ /\]/) { gsub(/[\[\]",]/, " ", val); split(val, a, " "); spv[lv] = a[1]; sext[lv] = a[2] }
            else inlist = 1
          }
        }
      }
      for (lv in lvs) {
        pv = spv[lv]
        if (segs[lv] != 1 || type[lv] != "striped" || stripes[lv] != 1) status = "not read: not one linear segment"
        else if (pvid[pv] != pvuuid) status = "not read: its extents are on another physical volume"
        else status = "read"
        offset = (status == "read") ? base + pestart[pv] + sext[lv] * extent : -1
        printf "%s\t%s\t%d\t%s\n", vg, lv, offset, status
      }
    }' | while IFS=$'\t' read -r vg lv offset status; do
      jq -cn --arg vg "$vg" --arg lv "$lv" --argjson offset "$offset" --arg status "$status" --argjson pv "$start" \
        '{volumeGroup: $vg, logicalVolume: $lv, physicalVolumeOffset: $pv, offset: (if $offset < 0 then null else $offset end), status: $status}'
    done >>"$out/lvm.jsonl"
done
while read -r offset; do lvm_offsets+=("$offset"); done < <(jq -r 'select(.offset != null) | .offset' "$out/lvm.jsonl")
offsets+=("${lvm_offsets[@]}")

# Where The Sleuth Kit cannot read a file system (XFS, for one), it is mounted
# instead: over a read-only loop device (checked), `ro,noload` (ext*) or
# `ro,norecovery` (xfs) so that no journal is replayed, and
# `noexec,nodev,nosuid`; its files are listed in the same body format. Root only.
: >"$out/mounted.jsonl"
declare -A mounted=()
loops=()
unmount_all() {
  local offset
  for offset in "${!mounted[@]}"; do
    umount "${mounted[$offset]}" 2>/dev/null || true
    rmdir "${mounted[$offset]}" 2>/dev/null || true
    unset "mounted[$offset]"
  done
  for loop in "${loops[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
  loops=()
}
trap unmount_all EXIT

mount_read_only() { # offset -> lists the file system in body-<offset>.txt
  local offset=$1 type options loop dir
  type=$(blkid -p -o value -s TYPE -O $((offset * 512)) "$device" 2>/dev/null || true)
  case "$type" in
    xfs) options=ro,norecovery,noexec,nodev,nosuid ;;
    ext2 | ext3 | ext4) options=ro,noload,noexec,nodev,nosuid ;;
    *) return 1 ;;
  esac
  if ((EUID != 0)); then
    echo "analyse-volume.sh: the $type file system at sector $offset needs mounting, which needs root" >&2
    return 1
  fi
  loop=$(losetup --read-only --find --show --offset $((offset * 512)) "$device") || return 1
  loops+=("$loop")
  [[ "$(blockdev --getro "$loop")" == 1 ]] || return 1
  dir=$(mktemp -d)
  mount -t "$type" -o "$options" "$loop" "$dir" || { rmdir "$dir"; return 1; }
  mounted[$offset]=$dir
  jq -cn --argjson offset "$offset" --arg type "$type" --arg options "$options" \
    '{offset: $offset, type: $type, options: $options}' >>"$out/mounted.jsonl"
  # find: type|name|inode|mode|uid|gid|size|atime|mtime|ctime -> a TSK body
  # line (a name may hold "|": the fixed fields are counted from the end).
  find "$dir" -xdev -printf '%y|/%P|%i|%M|%U|%G|%s|%A@|%T@|%C@\n' | awk -F'|' 'BEGIN { OFS = "|" }
    {
      name = $2; for (i = 3; i <= NF - 8; i++) name = name "|" $i
      sub(/\/$/, "", name); if (name == "") name = "/"
      t = ($1 == "f") ? "r" : $1
      print 0, name, $(NF-7), t "/" t substr($(NF-6), 2), $(NF-5), $(NF-4), $(NF-3), int($(NF-2)), int($(NF-1)), int($NF), 0
    }' >"$out/body-$offset.txt"
}

: >"$out/body.txt"
readable=()
pv_offsets=$(jq -r '.physicalVolumeOffset' "$out/lvm.jsonl" | sort -u)
for offset in "${offsets[@]}"; do
  if fls -r -m "/" -o "$offset" "$device" >"$out/body-$offset.txt" 2>/dev/null \
    || { ! grep -qx "$offset" <<<"$pv_offsets" && mount_read_only "$offset"; }; then
    readable+=("$offset")
    awk -v o="$offset" 'BEGIN { OFS = "|" } { print $0, o }' "$out/body-$offset.txt" >>"$out/body.offsets"
    cat "$out/body-$offset.txt" >>"$out/body.txt"
  fi
  rm -f "$out/body-$offset.txt"
done
((${#readable[@]})) || { echo "analyse-volume.sh: no file system The Sleuth Kit can read (or that can be mounted read-only) on $device" >&2; exit 1; }
mactime -b "$out/body.txt" -d -y -z UTC >"$out/timeline.csv"

# 4. The triage set. Body lines: MD5|name|inode|mode|uid|gid|size|atime|mtime|ctime|crtime|offset
# (a name may hold "|": the fixed fields are counted from the end).
newest=$(awk -F'|' '$(NF-8) ~ /^r/ && $(NF-3) > m { m = $(NF-3) } END { print m + 0 }' "$out/body.offsets")
since=$((newest - recent_days * 86400))
indicators="$out/indicators.jsonl"
files="$out/files.jsonl"
: >"$indicators"
: >"$files"

indicator() { # kind path detail
  jq -cn --arg kind "$1" --arg path "$2" --arg detail "$3" '{kind: $kind, path: $path, detail: $detail}' >>"$indicators"
}

# Selected regular files: which kind each is, from its path and mode.
awk -F'|' -v since="$since" '
  function name(   n, i) { n = $2; for (i = 3; i <= NF - 10; i++) n = n "|" $i; return n }
  $(NF-8) !~ /^r\// { next }
  {
    path = name(); kind = ""
    sub(/ \(deleted\)$/, "", path)
    if (path == "/etc/passwd") kind = "users"
    else if (path ~ /\/\.ssh\/authorized_keys2?$/) kind = "authorized_keys"
    else if (path == "/etc/crontab" || path ~ /^\/etc\/cron\.(d|hourly|daily|weekly|monthly)\// || path ~ /^\/var\/spool\/cron\//) kind = "cron"
    else if (path ~ /^\/(etc|usr\/lib|lib)\/systemd\/system\/.*\.(service|timer)$/ || path ~ /\/\.config\/systemd\/user\/.*\.(service|timer)$/) kind = "systemd"
    else if (path ~ /\/\.(bash|zsh|sh|ash)_history$/ || path ~ /\/\.python_history$/) kind = "shell-history"
    else if (path ~ /^\/(tmp|var\/tmp|dev\/shm|opt|root|home|usr\/local)\//) kind = "scan"
    executable = ($(NF-8) ~ /x/)
    if (executable && $(NF-3) >= since && kind == "") kind = "scan"
    if (kind == "") next
    print kind "\t" $(NF-9) "\t" $NF "\t" $(NF-5) "\t" executable "\t" $(NF-3) "\t" path
  }' "$out/body.offsets" >"$out/selected.tsv"

count=0
while IFS=$'\t' read -r kind inode offset size executable mtime path; do
  # Files larger than 64 MiB are listed in the timeline but not extracted here.
  ((size <= 67108864)) || continue
  count=$((count + 1))
  file=$(printf '%04d' "$count")
  if [[ -n "${mounted[$offset]:-}" ]]; then
    cat -- "${mounted[$offset]}$path" >"$out/files/$file" 2>/dev/null || { rm -f "$out/files/$file"; continue; }
  else
    icat -o "$offset" "$device" "$inode" >"$out/files/$file" 2>/dev/null || { rm -f "$out/files/$file"; continue; }
  fi
  sum=$(sha256sum <"$out/files/$file" | cut -d' ' -f1)
  jq -cn --arg file "files/$file" --arg path "$path" --arg sha256 "$sum" --arg kind "$kind" \
    --argjson size "$size" --argjson offset "$offset" --arg inode "$inode" \
    '{file: $file, path: $path, sha256: $sha256, size: $size, kind: $kind, partitionOffset: $offset, inode: $inode}' >>"$files"
  case "$kind" in
    users)
      while IFS=: read -r user _ uid _ _ home shell; do
        [[ "$uid" =~ ^[0-9]+$ ]] || continue
        if ((uid == 0)) && [[ "$user" != root ]]; then
          indicator user "$path" "$user has uid 0"
        elif ((uid >= 1000)) && [[ "$shell" != */nologin && "$shell" != */false ]]; then
          indicator user "$path" "$user uid $uid home $home shell $shell"
        fi
      done <"$out/files/$file"
      ;;
    authorized_keys)
      keys=$(grep -cvE '^[[:space:]]*(#|$)' "$out/files/$file" || true)
      indicator authorized_keys "$path" "$keys key(s)"
      ;;
    cron)
      while IFS= read -r line; do
        indicator cron "$path" "$line"
      done < <(grep -vE '^[[:space:]]*(#|$)|^[A-Z_]+=' "$out/files/$file" || true)
      ;;
    systemd)
      exec_start=$(grep -E '^[[:space:]]*ExecStart' "$out/files/$file" | head -n 1 || true)
      indicator systemd "$path" "${exec_start:-no ExecStart}"
      ;;
    shell-history)
      lines=$(wc -l <"$out/files/$file")
      indicator shell-history "$path" "$lines command(s)"
      ;;
  esac
  if ((executable)) && ((mtime >= since)); then
    indicator recent-executable "$path" "modified $(date -u -d "@$mtime" +%Y-%m-%dT%H:%M:%SZ), within $recent_days days of the volume's latest change"
  fi
  # YARA on every extracted file: miner binaries and configs, pool URLs.
  while read -r rule _; do
    [[ -n "$rule" ]] && indicator crypto-mining "$path" "YARA $rule"
  done < <(yara --no-warnings "$rules" "$out/files/$file" 2>/dev/null || true)
done <"$out/selected.tsv"

# 5. The device's hash after (every mount undone): the analysis changed nothing.
unmount_all
after=$(sha256sum <"$device" | cut -d' ' -f1)

jq -n \
  --arg volumeId "$volume_id" --arg device "$device" --arg readOnly "$read_only" \
  --arg before "$before" --arg after "$after" \
  --argjson partitions "$(printf '%s\n' "${readable[@]}" | jq -s 'map(tonumber)')" \
  --slurpfile indicators "$indicators" --slurpfile files "$files" --slurpfile lvm "$out/lvm.jsonl" \
  --slurpfile mounted "$out/mounted.jsonl" \
  --arg tsk "$(fls -V 2>&1 | head -n 1)" --arg yara "$(yara --version 2>&1 | head -n 1)" \
  '{volumeId: $volumeId, device: $device, readOnly: $readOnly,
    deviceSha256Before: $before, deviceSha256After: $after, unchanged: ($before == $after),
    partitions: $partitions, lvm: $lvm, mounted: $mounted, indicators: $indicators, files: $files,
    tools: {sleuthkit: $tsk, yara: $yara}}' >"$out/findings.json"
rm -f "$indicators" "$files" "$out/selected.tsv" "$out/body.offsets" "$out/lvm.jsonl" "$out/mounted.jsonl"

if [[ "$before" != "$after" ]]; then
  echo "analyse-volume.sh: the device's SHA-256 changed during the analysis" >&2
  exit 1
fi
