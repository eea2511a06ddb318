#!/usr/bin/env bash
# analyse-volume.sh: offline triage of one evidence volume, never writing to it.
#
# Usage: analyse-volume.sh --device PATH --volume-id vol-... --out DIR
#                          [--rules FILE.yar] [--recent-days N]
#                          [--reference-time EPOCH_SECONDS]
#                          [--max-files N] [--max-bytes N]
#
# PATH is a block device (the evidence volume attached to the forensic
# instance) or an image file. A block device is made read-only
# (`blockdev --setro`) and checked before anything reads it; an image file is
# only ever opened for reading. The Sleuth Kit reads the file systems directly
# (every partition `mmls` finds, or the whole device, and every linear LVM
# logical volume, located through the PV's own metadata); only a file system it
# cannot read (XFS) is mounted, read-only, without journal replay (root only).
#
# --reference-time is the source snapshot's start time: files modified within
# --recent-days of it are "recent". Without it the newest modification time
# that is not after the analysis time is used, and findings.json says which.
# The triage set (the files extracted and scanned) holds at most --max-files
# files (default 5000) and --max-bytes bytes (default 2 GiB); a file over
# 64 MiB is never extracted. What was left out is counted in findings.json.
#
# Writes, under DIR (which must not exist or be empty):
#   findings.json  {"volumeId", "device", "readOnly", "deviceSha256",
#                   "deviceBytes", "unchanged", "afterCheck": {"method":
#                   "sample", "description", "blockBytes", "offsets",
#                   "direct", "sampleSha256Before", "sampleSha256After",
#                   "readOnlyAfter"}, "analysisTime",
#                   "partitions": [offsets],
#                   "fileSystems": [{"offset", "type", "readBy", "why"}],
#                   "unreadable": null | "why no file system was read",
#                   "lvm": [{"volumeGroup", "logicalVolume", "offset", "status"}],
#                   "mounted": [{"offset", "type", "options"}],
#                   "recencyAnchor": {"source": "snapshot start" |
#                                     "newest plausible mtime" | "analysis time",
#                                     "epoch"},
#                   "triageCap": {"maxFiles", "maxBytes", "maxFileBytes",
#                                 "skipped", "reason"},
#                   "indicators": [{"kind", "path", "detail", "deleted",
#                                   "matches" (YARA only)}],
#                   "indicatorsNotListed",
#                   "files": [{..., "deleted"}],
#                   "toolErrors": [{"tool", "offset", "stderr", "path"}],
#                   "toolErrorsTotal",
#                   "unparsed": [{"source", "offset", "line"}], "unparsedTotal",
#                   "tools": {...}}
#                  Indicator kinds: user, authorized_keys, cron, systemd,
#                  shell-history, recent-executable, crypto-mining (YARA, with
#                  the strings it matched), future-timestamp (a time after the
#                  analysis; the first 200, then one "(not listed)" count).
#   timeline.csv   the mactime timeline of every file (UTC, ISO dates)
#   body.txt       the body file the timeline is made from (TSK's format; in
#                  names "%" and "|" are written %25 and %7C, which mactime
#                  decodes)
#   files/NNNN     the extracted triage files, named by number; findings.json
#                  maps each to its path in the file system and its SHA-256
# Uploading is a separate stage: this script needs no network and no credentials.
#
# Everything read from the volume is hostile data: names, link targets,
# timestamps, sizes, partition tables, LVM metadata, file contents. Each field
# is checked against what it must be (digits, a mode string) before any use;
# numbers are compared in awk or, once checked, in bash; names reach other
# programs only as arguments; JSON is written by jq from arguments or lines.
# A line that does not parse is recorded under "unparsed", a tool's complaint
# under "toolErrors", and neither stops the analysis.
set -euo pipefail
umask 077
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
device="" volume_id="" out="" rules="$here/rules/crypto-mining.yar" recent_days=30
reference_time="" max_files=5000 max_bytes=2147483648
readonly max_file_bytes=67108864

usage() {
  echo "usage: analyse-volume.sh --device PATH --volume-id vol-... --out DIR [--rules FILE] [--recent-days N] [--reference-time EPOCH] [--max-files N] [--max-bytes N]" >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --device) device=${2:-}; shift 2 || usage ;;
    --volume-id) volume_id=${2:-}; shift 2 || usage ;;
    --out) out=${2:-}; shift 2 || usage ;;
    --rules) rules=${2:-}; shift 2 || usage ;;
    --recent-days) recent_days=${2:-}; shift 2 || usage ;;
    --reference-time) reference_time=${2:-}; shift 2 || usage ;;
    --max-files) max_files=${2:-}; shift 2 || usage ;;
    --max-bytes) max_bytes=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
[[ -n "$device" && -n "$volume_id" && -n "$out" ]] || usage
[[ "$volume_id" =~ ^vol-[0-9a-f]{8,17}$ ]] || { echo "analyse-volume.sh: $volume_id is not a volume id" >&2; exit 2; }
[[ "$recent_days" =~ ^[0-9]{1,4}$ ]] || { echo "analyse-volume.sh: --recent-days is a number of days" >&2; exit 2; }
[[ -z "$reference_time" || "$reference_time" =~ ^[0-9]{1,11}$ ]] || { echo "analyse-volume.sh: --reference-time is seconds since 1970" >&2; exit 2; }
[[ "$max_files" =~ ^[0-9]{1,9}$ ]] || { echo "analyse-volume.sh: --max-files is a number of files" >&2; exit 2; }
[[ "$max_bytes" =~ ^[0-9]{1,15}$ ]] || { echo "analyse-volume.sh: --max-bytes is a number of bytes" >&2; exit 2; }
[[ -b "$device" || -f "$device" ]] || { echo "analyse-volume.sh: $device is neither a block device nor a file" >&2; exit 2; }
[[ -r "$rules" ]] || { echo "analyse-volume.sh: no YARA rules at $rules" >&2; exit 2; }
recent_days=$((10#$recent_days)) max_files=$((10#$max_files)) max_bytes=$((10#$max_bytes))
if [[ -e "$out" && -n "$(ls -A "$out")" ]]; then
  echo "analyse-volume.sh: $out is not empty" >&2
  exit 2
fi
mkdir -p "$out/files" "$out/work"
work="$out/work"
now=$(date -u +%s)

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

# 2. The device is read in full once: its SHA-256 is computed while the
# analysis runs (the device is read-only from here on, so both read the same
# bytes, and each often finds in the page cache what the other read). That
# the analysis changed nothing is checked on a sample instead of a second
# full pass: the same 1 MiB blocks (the first, the last, and others at
# offsets drawn from /dev/urandom, never from the volume) read before and
# after with O_DIRECT, past the page cache, and the kernel's read-only flag
# read again after. findings.json says which check was made.
readonly block=1048576
if [[ -b "$device" ]]; then
  device_bytes=$(blockdev --getsize64 "$device")
else
  device_bytes=$(stat -L -c %s "$device")
fi
blocks=$((device_bytes / block))
((blocks > 0)) || blocks=1
sample_count=$((device_bytes / (256 * block)))
((sample_count >= 8)) || sample_count=8
((sample_count <= 64)) || sample_count=64
((sample_count <= blocks)) || sample_count=$blocks
declare -A picked=([0]=1 [$((blocks - 1))]=1)
while ((${#picked[@]} < sample_count)); do
  picked[$(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % blocks))]=1
done
mapfile -t sample_offsets < <(printf '%s\n' "${!picked[@]}" | sort -n)
# O_DIRECT where the device allows it (a block device does; some file
# systems holding an image file do not).
direct=(iflag=direct)
dd if="$device" of=/dev/null bs="$block" count=1 "${direct[@]}" status=none 2>/dev/null || direct=()
# Prints the SHA-256 of the sampled blocks' SHA-256s; fails when any block
# cannot be read (a failed read never hashes as empty on both sides).
sample_sha256() {
  local offset sums=""
  for offset in "${sample_offsets[@]}"; do
    dd if="$device" of="$work/block" bs="$block" skip="$offset" count=1 "${direct[@]}" status=none || return 1
    sums+="$(sha256sum <"$work/block" | cut -d' ' -f1)"$'\n'
  done
  rm -f "$work/block"
  printf '%s' "$sums" | sha256sum | cut -d' ' -f1
}
sample_before=$(sample_sha256) || { echo "analyse-volume.sh: a sampled block of $device could not be read; nothing was analysed" >&2; exit 1; }
# The background hash stops if the analysis ends early (the trap set with
# the mounts below keeps doing so).
hash_pid=""
trap 'if [[ -n "${hash_pid:-}" ]]; then kill "$hash_pid" 2>/dev/null || true; fi' EXIT
sha256sum <"$device" >"$work/device.sha256" &
hash_pid=$!

# Text from the volume or from a tool that read it, made safe to show: a
# backslash is doubled and every byte outside printable ASCII is written \xNN.
awk_escape='
function escape(s,   out, i, c, n) {
  if (!escape_ready) { for (n = 1; n < 256; n++) escape_ord[sprintf("%c", n)] = n; escape_ready = 1 }
  out = ""
  for (i = 1; i <= length(s); i++) {
    c = substr(s, i, 1)
    if (c == "\\") out = out "\\\\"
    else if (c ~ /[ -~]/) out = out c
    else out = out sprintf("\\x%02x", escape_ord[c])
  }
  return out
}'

# What went wrong in a tool, kept as data: the first 2000 bytes of its
# standard error, escaped. At most 100 are listed; all are counted.
tool_errors_total=0
tool_error_fields=()
tool_error() { # tool offset stderr-file [path]
  [[ -s "$3" ]] || return 0
  tool_errors_total=$((tool_errors_total + 1))
  ((tool_errors_total <= 100)) || return 0
  tool_error_fields+=("$1" "$2" "$(head -c 2000 "$3" | awk "$awk_escape"'
    { text = text (NR > 1 ? "\n" : "") $0 } END { print escape(text) }')" "${4:-}")
}

# 3. File systems: every allocated partition, or the whole device. A start
# sector is digits (mmls prints what the partition table says).
: >"$work/unparsed.tsv"
offsets=()
if mmls -a "$device" >"$out/partitions.txt" 2>/dev/null; then
  while read -r start; do
    if [[ "$start" =~ ^[0-9]{1,15}$ ]]; then
      offsets+=("$((10#$start))")
    else
      printf '%s\t%s\t%s\n' mmls "" "start sector $(awk "$awk_escape"'{ print escape($0) }' <<<"$start")" >>"$work/unparsed.tsv"
    fi
  # `-a` lists allocated partitions only. The slot column (000, 001:000) says
  # a row is a partition; the description is the partition's name on GPT,
  # which the volume's owner writes, so it never decides anything.
  done < <(awk '$1 ~ /^[0-9]+:$/ && $2 ~ /^[0-9]+(:[0-9]+)?$/ && $3 ~ /^[0-9]+$/ { print $3 }' "$out/partitions.txt" | sort -u)
fi
((${#offsets[@]})) || offsets=(0)

# LVM. The Sleuth Kit does not read LVM, and activating a volume group would
# write to the system's device-mapper and may touch the metadata. Instead a
# physical volume (a partition's start, or the whole device) is read through
# its own on-disk text metadata: the newest copy (highest seqno) in its first
# MiB names, for each logical volume, where its extents lie; each linear
# logical volume on this PV becomes one more file system offset. Other
# layouts (several segments, striped, on other PVs) are listed, not read.
# Names are written with control characters as "^"; an offset that is not
# plain digits is recorded as unparsed.
: >"$out/lvm.jsonl"
lvm_offsets=() pv_offsets=" "
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
  pv_offsets+="$start "
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
        offset = (status == "read") ? sprintf("%.0f", base + pestart[pv] + sext[lv] * extent) : "-1"
        vgname = vg; lvname = lv
        gsub(/[\001-\037\177]/, "^", vgname); gsub(/[\001-\037\177]/, "^", lvname)
        printf "%s\t%s\t%s\t%s\n", vgname, lvname, offset, status
      }
    }' | while IFS=$'\t' read -r vg lv offset status; do
      if [[ "$offset" =~ ^(-1|[0-9]{1,15})$ ]]; then
        jq -cn --arg vg "$vg" --arg lv "$lv" --argjson offset "$offset" --arg status "$status" --argjson pv "$start" \
          '{volumeGroup: $vg, logicalVolume: $lv, physicalVolumeOffset: $pv, offset: (if $offset < 0 then null else $offset end), status: $status}'
      else
        printf '%s\t%s\t%s\n' lvm "$start" "$vg/$lv at $offset" >>"$work/unparsed.tsv"
        jq -cn --arg vg "$vg" --arg lv "$lv" --argjson pv "$start" \
          '{volumeGroup: $vg, logicalVolume: $lv, physicalVolumeOffset: $pv, offset: null, status: "not read: its location does not parse"}'
      fi
    done >>"$out/lvm.jsonl"
done
while read -r offset; do
  [[ "$offset" =~ ^[0-9]{1,15}$ ]] && lvm_offsets+=("$offset")
done < <(jq -r 'select(.offset != null) | .offset' "$out/lvm.jsonl")
offsets+=("${lvm_offsets[@]}")

# Where The Sleuth Kit cannot read a file system (XFS, for one), it is mounted
# instead: over a read-only loop device (checked), `ro,noload` (ext*) or
# `ro,norecovery` (xfs) so that no journal is replayed, and
# `noexec,nodev,nosuid`; its files are listed in the same record format. Root only.
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
# The background hash of step 2 stops if the analysis ends early.
trap 'unmount_all; if [[ -n "${hash_pid:-}" ]]; then kill "$hash_pid" 2>/dev/null || true; fi' EXIT

# The file system type blkid sees at a sector, and whether it is encryption.
blkid_type() { # offset -> "TYPE USAGE" (each [A-Za-z0-9_.-], or "-")
  local type="-" usage="-" line
  while IFS= read -r line; do
    case "$line" in
      TYPE=*) [[ "${line#TYPE=}" =~ ^[A-Za-z0-9_.-]{1,32}$ ]] && type=${line#TYPE=} ;;
      USAGE=*) [[ "${line#USAGE=}" =~ ^[A-Za-z0-9_.-]{1,32}$ ]] && usage=${line#USAGE=} ;;
    esac
  done < <(blkid -p -o export -O $(($1 * 512)) "$device" 2>/dev/null || true)
  echo "$type $usage"
}

# Records, one line per file name, tab-separated, every field checked:
#   offset reader(t: The Sleuth Kit, m: mounted) deleted realloc inode mode
#   uid gid size atime mtime ctime crtime base rawpath path
# path is the name as listed, control characters written "^" (as fls does);
# rawpath is, for a mounted file system, the real relative path with every
# byte but [A-Za-z0-9._/-] written \xNN (read back with printf %b), else "-".
records="$work/records.tsv"
body="$out/body.txt"
: >"$records"
: >"$body"

# Lists a directory tree with The Sleuth Kit into raw-<offset>: each body line
# prefixed with u| (an allocated name, fls -u) or d| (a deleted one, fls -d;
# fls appends " (deleted)"), and the length of the prefix printed before the
# paths. Separate runs keep a name that merely ends in " (deleted)" live.
tsk_list() { # offset prefix [inode] -> 0 when fls listed anything
  local offset=$1 prefix=$2 inode=${3:-} flag
  local args=(-r -m "$prefix" -o "$offset" "$device")
  [[ -z "$inode" ]] || args+=("$inode")
  for flag in u d; do
    fls "-$flag" "${args[@]}" >"$work/fls.out" 2>"$work/fls.err" || true
    if [[ "$flag" == u && ! -s "$work/fls.out" ]]; then
      cp "$work/fls.err" "$work/fls-$offset.err"
      return 1
    fi
    awk -v tag="$flag" -v base=$((${#prefix} - 1)) '{ print tag "|" base "|" $0 }' "$work/fls.out" >>"$work/raw-$offset"
    tool_error fls "$offset" "$work/fls.err" "$prefix"
  done
}

# fls silently leaves out what it cannot reach: the entries of a directory it
# cannot read, and everything below a path of 4096 bytes or 128 levels (with
# the rest of that directory). The shallowest directory past 3500 bytes or 100
# levels of a listing is listed again as a root of its own, and a directory
# that lists no entry is read once more on its own, so that its error, if
# any, is recorded (200 at most, those where persistence lives first).
read_with_tsk() { # offset -> 0 when The Sleuth Kit read the file system
  local offset=$1 done_lines=0 relisted=" " relists=0 inode path probes=0 unprobed=0
  : >"$work/raw-$offset"
  tsk_list "$offset" / || return 1
  for _ in {1..20}; do
    tail -n +$((done_lines + 1)) "$work/raw-$offset" | awk -F'|' '
      function deep(r,   t) { t = r; return length(r) >= 3500 || gsub(/\//, "/", t) >= 100 }
      NF >= 13 && $1 == "u" && $(NF-7) ~ /^d\/d/ && $2 ~ /^[0-9]+$/ {
        name = $4; for (i = 5; i <= NF - 9; i++) name = name "|" $i
        rel = substr(name, $2 + 1)
        if (!deep(rel)) next
        parent = rel; sub(/\/[^\/]*$/, "", parent)
        if (deep(parent)) next
        gsub(/[\001-\037\177]/, "^", name)
        print $(NF-8) "\t" name
      }' >"$work/deep.tsv"
    done_lines=$(wc -l <"$work/raw-$offset")
    [[ -s "$work/deep.tsv" ]] || break
    while IFS=$'\t' read -r inode path; do
      [[ "$inode" =~ ^[0-9]{1,20}(-[0-9]{1,10}){0,2}$ ]] || continue
      case "$relisted" in *" $inode "*) continue ;; esac
      relisted+="$inode "
      relists=$((relists + 1))
      ((relists <= 200)) || break
      tsk_list "$offset" "$path/" "$inode" || tool_error fls "$offset" "$work/fls.err" "$path"
    done <"$work/deep.tsv"
  done
  awk -F'|' '
    NF >= 13 {
      name = $4; for (i = 5; i <= NF - 9; i++) name = name "|" $i
      if ($1 == "d") sub(/ \((deleted|deleted-realloc)\)$/, "", name)
      if ($(NF-7) !~ /^l/) { parent = name; sub(/\/[^\/]*$/, "", parent); listed[parent] = 1 }
      if ($1 == "u" && $(NF-7) ~ /^d\/d/) dirs[name] = $(NF-8)
    }
    END {
      for (d in dirs) if (!(d in listed)) {
        name = d; gsub(/[\001-\037\177]/, "^", name)
        print (name ~ /^\/(etc|root|home|tmp|var\/tmp|var\/spool|dev\/shm|opt|usr\/local|usr\/lib\/systemd|lib\/systemd)(\/|$)/ ? 0 : 1) "\t" dirs[d] "\t" name
      }
    }' "$work/raw-$offset" | sort -t "$(printf '\t')" -k1,1n -k3 >"$work/childless.tsv"
  while IFS=$'\t' read -r _ inode path; do
    [[ "$inode" =~ ^[0-9]{1,20}(-[0-9]{1,10}){0,2}$ ]] || continue
    probes=$((probes + 1))
    if ((probes > 200)); then unprobed=$((unprobed + 1)); continue; fi
    if ! fls -o "$offset" "$device" "$inode" >/dev/null 2>"$work/probe.err"; then
      [[ -s "$work/probe.err" ]] || echo "fls failed on this directory" >"$work/probe.err"
    fi
    tool_error fls "$offset" "$work/probe.err" "$path"
  done <"$work/childless.tsv"
  if ((unprobed)); then
    echo "$unprobed more directories list no entry and were not read again" >"$work/probe.err"
    tool_error analyse-volume.sh "$offset" "$work/probe.err"
  fi
  # Check every field; write the records, the body and what did not parse
  # (a name listed twice, by a listing and its relisting, once).
  awk -F'|' -v OFS='\t' -v offset="$offset" -v relisted="$relists" -v records="$records" -v body="$body" -v unparsed="$work/unparsed.tsv" "$awk_escape"'
    function digits(s) { return s ~ /^[0-9]+$/ && length(s) <= 20 }
    function reject() {
      if (++rejected <= 100) printf "fls\t%s\t%s\n", offset, escape(substr($0, index($0, "|") + 1 + length($2) + 1, 4000)) >> unparsed
      else printf "fls\t%s\t\n", offset >> unparsed
    }
    {
      if (NF < 13 || $1 !~ /^[ud]$/ || $2 !~ /^[0-9]+$/) { reject(); next }
      name = $4; for (i = 5; i <= NF - 9; i++) name = name "|" $i
      inode = $(NF-8); mode = $(NF-7)
      if ($3 !~ /^[0-9a-f]+$/ || inode !~ /^[0-9]+(-[0-9]+)?(-[0-9]+)?$/ || length(inode) > 40 \
          || length(mode) != 12 || mode !~ /^[-a-zA-Z]\/[-a-zA-Z]+$/ || substr(name, 1, 1) != "/") { reject(); next }
      for (i = NF - 6; i <= NF; i++) if (!digits($i)) { reject(); next }
      shown = name; deleted = 0; realloc = 0
      if ($1 == "d") {
        deleted = 1
        if (sub(/ \(deleted-realloc\)$/, "", name)) realloc = 1
        else if (!sub(/ \(deleted\)$/, "", name)) { reject(); next }
      }
      gsub(/[\001-\037\177]/, "^", name); gsub(/[\001-\037\177]/, "^", shown)
      if (relisted) {
        key = $1 SUBSEP inode SUBSEP name
        if (key in seen) next
        seen[key] = 1
      }
      print offset, "t", deleted, realloc, inode, mode, $(NF-6), $(NF-5), $(NF-4), $(NF-3), $(NF-2), $(NF-1), $NF, $2, "-", name >> records
      gsub(/%/, "%25", shown); gsub(/\|/, "%7C", shown)
      print $3 "|" shown "|" inode "|" mode "|" $(NF-6) "|" $(NF-5) "|" $(NF-4) "|" $(NF-3) "|" $(NF-2) "|" $(NF-1) "|" $NF >> body
    }' "$work/raw-$offset"
  rm -f "$work/raw-$offset"
}

mount_read_only() { # offset type -> lists the mounted file system into the records
  local offset=$1 type=$2 options loop dir
  case "$type" in
    # nouuid: copies of one image share an XFS UUID, and volumes are
    # analysed side by side.
    xfs) options=ro,norecovery,nouuid,noexec,nodev,nosuid ;;
    ext2 | ext3 | ext4) options=ro,noload,noexec,nodev,nosuid ;;
    *) mount_note="it is not a type this script mounts (xfs, ext2/3/4)"; return 1 ;;
  esac
  if ((EUID != 0)); then
    mount_note="mounting it read-only needs root"
    echo "analyse-volume.sh: the $type file system at sector $offset needs mounting, which needs root" >&2
    return 1
  fi
  mount_note="the read-only mount failed"
  loop=$(losetup --read-only --find --show --offset $((offset * 512)) "$device" 2>"$work/mount.err") \
    || { tool_error losetup "$offset" "$work/mount.err"; return 1; }
  loops+=("$loop")
  [[ "$(blockdev --getro "$loop")" == 1 ]] || return 1
  dir=$(mktemp -d)
  mount -t "$type" -o "$options" "$loop" "$dir" 2>"$work/mount.err" \
    || { tool_error mount "$offset" "$work/mount.err"; rmdir "$dir"; return 1; }
  mounted[$offset]=$dir
  jq -cn --argjson offset "$offset" --arg type "$type" --arg options "$options" \
    '{offset: $offset, type: $type, options: $options}' >>"$out/mounted.jsonl"
  # find: eleven NUL-terminated fields per name (a name may hold anything but
  # NUL): type inode mode uid gid size atime mtime ctime path link-target.
  find "$dir" -xdev -printf '%y\0%i\0%M\0%U\0%G\0%s\0%A@\0%T@\0%C@\0%P\0%l\0' 2>"$work/find.err" \
    | awk -v RS='\0' -v OFS='\t' -v offset="$offset" -v records="$records" -v body="$body" -v unparsed="$work/unparsed.tsv" "$awk_escape"'
      function digits(s) { return s ~ /^[0-9]+$/ && length(s) <= 20 }
      function seconds(s) { if (s !~ /^-?[0-9]+(\.[0-9]+)?$/ || length(s) > 40) return ""; sub(/\..*/, "", s); return s }
      function encode(s,   out, i, c) {
        out = ""
        for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); out = out (c ~ /[A-Za-z0-9._\/-]/ ? c : sprintf("\\x%02x", escape_ord[c])) }
        return out
      }
      function reject(   line, i) {
        line = f[1]; for (i = 2; i <= 11; i++) line = line "|" f[i]
        if (++rejected <= 100) printf "find\t%s\t%s\n", offset, escape(substr(line, 1, 4000)) >> unparsed
        else printf "find\t%s\t\n", offset >> unparsed
      }
      BEGIN { escape("") }
      { f[++n] = $0; if (n < 11) next; n = 0 }
      {
        t = f[1]; at = seconds(f[7]); mt = seconds(f[8]); ct = seconds(f[9])
        if (t !~ /^[fdlbcpsD]$/ || !digits(f[2]) || length(f[3]) != 10 || f[3] !~ /^[-a-zA-Z]+$/ \
            || !digits(f[4]) || !digits(f[5]) || !digits(f[6]) || at == "" || mt == "" || ct == "") { reject(); next }
        if (t == "f") t = "r"
        name = "/" f[10]; sub(/\/$/, "", name); if (name == "") name = "/"
        if (t == "l") name = name " -> " f[11]
        gsub(/[\001-\037\177]/, "^", name)
        mode = t "/" t substr(f[3], 2)
        print offset, "m", 0, 0, f[2], mode, f[4], f[5], f[6], at, mt, ct, 0, 0, (f[10] == "" ? "-" : encode(f[10])), name >> records
        shown = name; gsub(/%/, "%25", shown); gsub(/\|/, "%7C", shown)
        print "0|" shown "|" f[2] "|" mode "|" f[4] "|" f[5] "|" f[6] "|" at "|" mt "|" ct "|0" >> body
      }
      END { if (n) { for (i = n + 1; i <= 11; i++) f[i] = ""; reject() } }'
  tool_error find "$offset" "$work/find.err"
}

readable=()
declare -A fs_type=()
: >"$work/filesystems.jsonl"
for offset in "${offsets[@]}"; do
  read -r type usage < <(blkid_type "$offset")
  read_by="" why="" mount_note=""
  if read_with_tsk "$offset"; then
    read_by=sleuthkit
    tsk_type=$(fsstat -t -o "$offset" "$device" 2>/dev/null | head -n 1 || true)
    [[ "$tsk_type" =~ ^[a-z0-9]{1,16}$ ]] && type=$tsk_type
  elif [[ "$pv_offsets" == *" $offset "* ]]; then
    why="an LVM physical volume (its logical volumes are listed under lvm)"
  elif mount_read_only "$offset" "$type"; then
    read_by=mount
  else
    case "$type:$usage" in
      crypto_LUKS:*) why="encrypted (LUKS): its key is needed to read it" ;;
      BitLocker:*) why="encrypted (BitLocker): its recovery key is needed to read it" ;;
      *:crypto) why="encrypted ($type): its key is needed to read it" ;;
      -:*) why="no file system signature that The Sleuth Kit or blkid knows" ;;
      *) why="$type: The Sleuth Kit cannot read it and $mount_note" ;;
    esac
    [[ "$type" != - ]] || tool_error fls "$offset" "$work/fls-$offset.err"
  fi
  fs_type[$offset]=$type
  [[ -z "$read_by" ]] || readable+=("$offset")
  jq -cn --argjson offset "$offset" --arg type "$type" --arg readBy "$read_by" --arg why "$why" \
    '{offset: $offset, type: (if $type == "-" then null else $type end),
      readBy: (if $readBy == "" then null else $readBy end), why: (if $why == "" then null else $why end)}' \
    >>"$work/filesystems.jsonl"
done

# JSON records from bash values go to jq on standard input, NUL-separated (a
# name from the volume holds any byte but NUL), in batches: never as
# arguments, whose total size the kernel caps (a volume of long, deep names
# would pass it and stop the script).
fields_to_jq() { # N FILTER FIELD... : $a is the fields, a whole number of N-field records
  local n=$1 filter=$2
  shift 2
  printf '%s\0' "$@" | jq -cRs --argjson n "$n" \
    "split(\"\\u0000\") | .[:(length - length % \$n)] as \$a | $filter"
}
indicator_fields=() indicator_bytes=0 indicators_listed=0 indicators_not_listed=0
flush_indicators() {
  ((${#indicator_fields[@]})) || return 0
  # shellcheck disable=SC2016 # a jq program: $a and $i are jq's
  fields_to_jq 4 'range(0; $a | length; 4) as $i
    | {kind: $a[$i], path: $a[$i + 1], detail: $a[$i + 2], deleted: ($a[$i + 3] == "1")}' \
    "${indicator_fields[@]}" >>"$work/indicators.jsonl"
  indicator_fields=() indicator_bytes=0
}
indicator() { # kind path detail deleted(0|1)
  if ((indicators_listed >= 10000)); then indicators_not_listed=$((indicators_not_listed + 1)); return 0; fi
  indicators_listed=$((indicators_listed + 1))
  indicator_fields+=("$1" "$2" "${3:0:2000}" "$4")
  indicator_bytes=$((indicator_bytes + ${#2} + ${#3} + 64))
  ((indicator_bytes < 262144)) || flush_indicators
}
file_fields=()
flush_files() {
  ((${#file_fields[@]})) || return 0
  # shellcheck disable=SC2016 # a jq program: $a and $i are jq's
  fields_to_jq 7 'range(0; $a | length; 7) as $i
    | {file: $a[$i], path: $a[$i + 1], size: ($a[$i + 2] | tonumber), kind: $a[$i + 3],
       partitionOffset: ($a[$i + 4] | tonumber), inode: $a[$i + 5], deleted: ($a[$i + 6] == "1")}' \
    "${file_fields[@]}" >>"$work/files.jsonl"
  file_fields=()
}
: >"$work/indicators.jsonl"
: >"$work/files.jsonl"
: >"$work/yara.tsv"
anchor_source="analysis time" anchor=$now skipped=0 skip_reason=""

if ((${#readable[@]})); then
  mactime -b "$body" -d -y -z UTC >"$out/timeline.csv" 2>"$work/mactime.err" || true
  tool_error mactime "" "$work/mactime.err"

  # 4. The recency window: from the snapshot's start when it is known, else
  # from the newest modification time that is not after this analysis.
  if [[ -n "$reference_time" ]]; then
    anchor_source="snapshot start" anchor=$((10#$reference_time))
  else
    newest=$(awk -F'\t' -v now="$now" '$6 ~ /^r\/r/ && $11 + 0 <= now + 0 && (m == "" || $11 + 0 > m + 0) { m = $11 } END { print m }' "$records")
    if [[ "$newest" =~ ^[0-9]{1,12}$ ]]; then
      anchor_source="newest plausible mtime" anchor=$((10#$newest))
    fi
  fi
  since=$((anchor - recent_days * 86400))

  # Which files to extract, most telling first: persistence (users, keys,
  # cron, systemd, shell history), then executables modified within the
  # window, other executables, the rest of the scanned directories; smaller
  # files first within each, so that a few large ones cannot push many small
  # ones (configurations, scripts) out of the triage set. On NTFS
  # and FAT every file has the same mode, so an executable is known by its
  # extension. Timestamps after the analysis time are indicators themselves.
  ext_offsets=" "
  for offset in "${readable[@]}"; do
    case "${fs_type[$offset]}" in ntfs | fat12 | fat16 | fat32 | exfat) ext_offsets+="$offset " ;; esac
  done
  awk -F'\t' -v OFS='\t' -v now="$now" -v since="$since" -v ext_offsets="$ext_offsets" -v future="$work/future.tsv" '
    function iso(t,   days, secs, z, era, doe, yoe, y, doy, mp, d, m) {
      if (t > 1e11 || t < -1e11) return t " seconds"
      days = int(t / 86400); secs = t - days * 86400
      if (secs < 0) { secs += 86400; days-- }
      z = days + 719468
      era = int((z >= 0 ? z : z - 146096) / 146097)
      doe = z - era * 146097
      yoe = int((doe - int(doe / 1460) + int(doe / 36524) - int(doe / 146096)) / 365)
      y = yoe + era * 400; doy = doe - (365 * yoe + int(yoe / 4) - int(yoe / 100))
      mp = int((5 * doy + 2) / 153); d = doy - int((153 * mp + 2) / 5) + 1
      m = mp < 10 ? mp + 3 : mp - 9
      if (m <= 2) y++
      return sprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, int(secs / 3600), int((secs % 3600) / 60), secs % 60)
    }
    function later(label, t,   note) {
      if (t + 0 <= now + 0) return ""
      note = label " " iso(t + 0)
      if ($2 == "t" && t + 0 >= 2147483648 && t + 0 < 4294967296) note = note " (" iso(t - 4294967296) " if stored as a signed 32-bit time)"
      return note
    }
    {
      notes = ""
      split("atime mtime ctime crtime", label, " ")
      for (i = 10; i <= 13; i++) { n = later(label[i - 9], $i); if (n != "") notes = notes (notes == "" ? "" : "; ") n }
      if (notes != "") {
        if (++futures <= 200) printf "future-timestamp\t%s\tafter the analysis time: %s\t%s\n", $16, notes, $3 > future
        else extra_future++
      }
      if ($6 !~ /^r\/r/ || $4 == 1) next
      path = $16; kind = ""
      if (path == "/etc/passwd") kind = "users"
      else if (path ~ /\/\.ssh\/authorized_keys2?$/) kind = "authorized_keys"
      else if (path == "/etc/crontab" || path ~ /^\/etc\/cron\.(d|hourly|daily|weekly|monthly)\// || path ~ /^\/var\/spool\/cron\//) kind = "cron"
      else if (path ~ /^\/(etc|usr\/lib|lib)\/systemd\/system\/.*\.(service|timer)$/ || path ~ /\/\.config\/systemd\/user\/.*\.(service|timer)$/) kind = "systemd"
      else if (path ~ /\/\.(bash|zsh|sh|ash)_history$/ || path ~ /\/\.python_history$/) kind = "shell-history"
      else if (path ~ /^\/(tmp|var\/tmp|dev\/shm|opt|root|home|usr\/local)\//) kind = "scan"
      if (index(ext_offsets, " " $1 " ")) executable = (tolower(path) ~ /\.(exe|dll|sys|scr|ps1|bat|cmd|com|msi)$/)
      else executable = (substr($6, 4) ~ /[xst]/)
      recent = (executable && $11 + 0 >= since + 0)
      if (recent && kind == "") kind = "scan"
      if (kind == "" || (kind == "scan" && $9 + 0 == 0)) next
      priority = (kind != "scan") ? 0 : recent ? 1 : executable ? 2 : 3
      print priority, $9, NR, kind, $1, $2, $3, $5, $9, executable, recent, $11, $15, path
    }
    END {
      if (extra_future) printf "future-timestamp\t%s\t%d more names with timestamps after the analysis time are not listed here (timeline.csv has them all)\t0\n", "(not listed)", extra_future > future
    }' "$records" \
    | sort -t "$(printf '\t')" -k1,1n -k2,2n -k3,3n \
    | awk -F'\t' -v OFS='\t' -v max_files="$max_files" -v max_bytes="$max_bytes" -v max_file="$max_file_bytes" -v counts="$work/cap.txt" '
      $9 + 0 > max_file + 0 { big++; next }
      n >= max_files + 0 { over_files++; next }
      bytes + $9 > max_bytes + 0 { over_bytes++; next }
      { n++; bytes += $9; print $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }
      END { printf "%d %d %d\n", big, over_files, over_bytes > counts }' >"$work/selected.tsv"
  read -r big over_files over_bytes <"$work/cap.txt"
  for n in "$big" "$over_files" "$over_bytes"; do [[ "$n" =~ ^[0-9]{1,9}$ ]] || n=0; skipped=$((skipped + 10#$n)); done
  reasons=()
  [[ "$big" == 0 ]] || reasons+=("$big file(s) over 64 MiB")
  [[ "$over_files" == 0 ]] || reasons+=("$over_files past --max-files $max_files")
  [[ "$over_bytes" == 0 ]] || reasons+=("$over_bytes past --max-bytes $max_bytes")
  skip_reason=$(IFS=';'; echo "${reasons[*]}")
  skip_reason=${skip_reason//;/; }

  if [[ -s "$work/future.tsv" ]]; then
    while IFS=$'\t' read -r kind path detail deleted; do
      indicator "$kind" "$path" "$detail" "$deleted"
    done <"$work/future.tsv"
  fi

  count=0
  while IFS=$'\t' read -r kind offset reader deleted inode size _ recent mtime rawpath path; do
    [[ "$offset" =~ ^[0-9]{1,15}$ && "$reader" =~ ^[tm]$ && "$deleted" =~ ^[01]$ && "$size" =~ ^[0-9]{1,15}$ \
      && "$inode" =~ ^[0-9]{1,20}(-[0-9]{1,10}){0,2}$ && "$recent" =~ ^[01]$ && "$mtime" =~ ^-?[0-9]{1,12}$ ]] || continue
    count=$((count + 1))
    printf -v file '%04d' "$count"
    if [[ "$reader" == m ]]; then
      [[ -n "${mounted[$offset]:-}" ]] || continue
      printf -v source '%b' "$rawpath"
      source="${mounted[$offset]}/$source"
      if [[ ! -f "$source" || -L "$source" ]] || ! cat -- "$source" >"$out/files/$file" 2>"$work/read.err"; then
        [[ -s "$work/read.err" ]] || echo "not a regular file when read" >"$work/read.err"
        tool_error cat "$offset" "$work/read.err" "$path"
        rm -f "$out/files/$file"
        continue
      fi
    elif ! timeout 300 icat -o "$offset" "$device" "$inode" >"$out/files/$file" 2>"$work/read.err"; then
      [[ -s "$work/read.err" ]] || echo "icat failed or ran past 300 s" >"$work/read.err"
      tool_error icat "$offset" "$work/read.err" "$path"
      rm -f "$out/files/$file"
      continue
    else
      tool_error icat "$offset" "$work/read.err" "$path"
    fi
    file_fields+=("files/$file" "$path" "$((10#$size))" "$kind" "$offset" "$inode" "$deleted")
    ((${#file_fields[@]} < 3500)) || flush_files
    case "$kind" in
      users)
        while IFS= read -r detail; do
          indicator user "$path" "$detail" "$deleted"
        done < <(awk -F: '
          NF >= 3 && $3 ~ /^[0-9]+$/ && length($3) <= 10 {
            user = $1; home = $6; shell = $7
            gsub(/[\001-\037\177]/, "^", user); gsub(/[\001-\037\177]/, "^", home); gsub(/[\001-\037\177]/, "^", shell)
            if ($3 + 0 == 0 && user != "root") line = user " has uid 0"
            else if ($3 + 0 >= 1000 && shell !~ /\/(nologin|false)$/) line = user " uid " $3 " home " home " shell " shell
            else next
            print substr(line, 1, 1000)
            if (++n >= 100) exit
          }' "$out/files/$file")
        ;;
      authorized_keys)
        keys=$(awk '!/^[ \t]*(#|$)/ { n++ } END { print n + 0 }' "$out/files/$file")
        indicator authorized_keys "$path" "$keys key(s)" "$deleted"
        ;;
      cron)
        while IFS= read -r line; do
          indicator cron "$path" "$line" "$deleted"
        done < <(awk '!/^[ \t]*(#|$)/ && !/^[A-Z_]+=/ { print substr($0, 1, 1000); if (++n >= 50) exit }' "$out/files/$file")
        ;;
      systemd)
        exec_start=$(awk '/^[ \t]*ExecStart/ { print substr($0, 1, 1000); exit }' "$out/files/$file")
        indicator systemd "$path" "${exec_start:-no ExecStart}" "$deleted"
        ;;
      shell-history)
        lines=$(awk 'END { print NR }' "$out/files/$file")
        indicator shell-history "$path" "$lines command(s)" "$deleted"
        ;;
    esac
    if [[ "$recent" == 1 ]]; then
      if [[ "$anchor_source" == "snapshot start" ]]; then within="the snapshot's start"; else within="the volume's newest plausible change"; fi
      indicator recent-executable "$path" "modified $(date -u -d "@$mtime" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo "at $mtime"), within $recent_days days of $within" "$deleted"
    fi
  done <"$work/selected.tsv"
  flush_files
  flush_indicators

  # YARA on every extracted file, once: miner binaries and configurations,
  # pool addresses. yara -s prints each matched string (non-printable bytes
  # as \xNN); the first 10 distinct ones per rule and file are kept.
  if ((count)); then
    yara --no-warnings -s -r -a 120 "$rules" "$out/files" 2>"$work/yara.err" \
      | awk '
        /^[A-Za-z_][A-Za-z0-9_]* / { rule = $1; file = substr($0, length($1) + 2); sub(/.*\//, "", file); if (file !~ /^[0-9]+$/) rule = ""; else print file "\t" rule "\t"; next }
        rule != "" && /^0x[0-9a-fA-F]+:\$[A-Za-z0-9_]*: / {
          data = $0; sub(/^0x[0-9a-fA-F]+:\$[A-Za-z0-9_]*: /, "", data)
          gsub(/[\001-\037\177]/, "?", data); data = substr(data, 1, 200)
          key = file SUBSEP rule SUBSEP data
          if (!(key in seen) && ++matches[file SUBSEP rule] <= 10) { seen[key] = 1; print file "\t" rule "\t" data }
        }' >"$work/yara.tsv" || true
    tool_error yara "" "$work/yara.err"
  fi
fi

# 5. The device's full hash, and the sample read again (every mount undone):
# the analysis changed nothing.
unmount_all
wait "$hash_pid" || { echo "analyse-volume.sh: reading the whole device for its SHA-256 failed" >&2; exit 1; }
hash_pid=""
device_sha256=$(cut -d' ' -f1 <"$work/device.sha256")
sample_after=$(sample_sha256) || sample_after="unreadable"
read_only_after=image
if [[ -b "$device" ]]; then
  read_only_after=$(blockdev --getro "$device")
fi
unchanged=false
if [[ "$sample_before" == "$sample_after" && "$read_only_after" =~ ^(1|image)$ ]]; then
  unchanged=true
fi
if ((${#direct[@]})); then
  how="read with O_DIRECT"
else
  how="read through the page cache (the device refused O_DIRECT)"
fi
after_check="no change found in ${#sample_offsets[@]} sampled blocks of 1 MiB (the first, the last, the rest at random offsets), $how before and after the analysis"
if [[ -b "$device" ]]; then
  after_check+=", and the kernel's read-only flag read again after ($read_only_after)"
fi
after_check+="; the rest of the device was not read again: its SHA-256 was computed once, during the analysis"

(cd "$out/files" && find . -type f -name '[0-9]*' -print0 | xargs -0r sha256sum) >"$work/sums.txt"
jq -cn '[inputs | capture("^(?<sha>[0-9a-f]{64})  \\./(?<file>[0-9]+)$")? | {key: ("files/" + .file), value: .sha}] | from_entries' \
  -R <"$work/sums.txt" >"$work/sums.json"
if ((${#tool_error_fields[@]})); then
  # shellcheck disable=SC2016 # a jq program: $a and $i are jq's
  fields_to_jq 4 '[range(0; $a | length; 4) as $i
    | {tool: $a[$i], offset: ($a[$i + 1] | tonumber? // null), stderr: $a[$i + 2], path: (if $a[$i + 3] == "" then null else $a[$i + 3] end)}]' \
    "${tool_error_fields[@]}" >"$work/tool-errors.json"
else
  echo '[]' >"$work/tool-errors.json"
fi
unparsed_total=$(wc -l <"$work/unparsed.tsv")
head -n 100 "$work/unparsed.tsv" | jq -cR 'split("\t") | {source: .[0], offset: (.[1] | tonumber? // null), line: .[2]}' >"$work/unparsed.jsonl"
readable_json=$(printf '%s\n' "${readable[@]}" | jq -cR 'tonumber? // empty' | jq -cs .)
unreadable=""
if ((${#readable[@]} == 0)); then
  unreadable=$(jq -r '"sector \(.offset): \(.why // "not read")"' "$work/filesystems.jsonl" | paste -sd ';' | sed 's/;/; /g')
  : >"$out/timeline.csv"
fi

jq -an \
  --arg volumeId "$volume_id" --arg device "$device" --arg readOnly "$read_only" \
  --arg deviceSha256 "$device_sha256" --argjson deviceBytes "$device_bytes" \
  --arg sampleBefore "$sample_before" --arg sampleAfter "$sample_after" \
  --argjson unchanged "$unchanged" --arg afterCheck "$after_check" \
  --arg readOnlyAfter "$read_only_after" --argjson direct "$( ((${#direct[@]})) && echo true || echo false)" \
  --argjson sampleOffsets "$(printf '%s\n' "${sample_offsets[@]}" | jq -cs .)" \
  --argjson now "$now" \
  --argjson partitions "$readable_json" --arg unreadable "$unreadable" \
  --slurpfile fileSystems "$work/filesystems.jsonl" \
  --slurpfile indicators "$work/indicators.jsonl" --argjson indicatorsNotListed "$indicators_not_listed" \
  --slurpfile files "$work/files.jsonl" --slurpfile sums "$work/sums.json" \
  --slurpfile lvm "$out/lvm.jsonl" --slurpfile mounted "$out/mounted.jsonl" \
  --arg anchorSource "$anchor_source" --argjson anchor "$anchor" \
  --argjson maxFiles "$max_files" --argjson maxBytes "$max_bytes" --argjson maxFileBytes "$max_file_bytes" \
  --argjson skipped "$skipped" --arg skipReason "$skip_reason" \
  --slurpfile toolErrors "$work/tool-errors.json" --argjson toolErrorsTotal "$tool_errors_total" \
  --slurpfile unparsed "$work/unparsed.jsonl" --argjson unparsedTotal "$unparsed_total" \
  --rawfile yara "$work/yara.tsv" \
  --arg tsk "$(fls -V 2>&1 | head -n 1)" --arg yaraVersion "$(yara --version 2>&1 | head -n 1)" \
  '($files | map(. + {sha256: ($sums[0][.file] // null)})) as $files
  | ($files | map({key: .file, value: .}) | from_entries) as $byFile
  | [$yara | split("\n")[] | select(length > 0) | split("\t") | select(length >= 2)
      | {file: ("files/" + .[0]), rule: .[1], match: (.[2] // "")}]
  | group_by([.file, .rule])
  | map(select($byFile[.[0].file] != null)
      | (map(.match) | map(select(length > 0)) | unique) as $all
      | ($all | map(. as $m | select(all($all[]; . == $m or (contains($m) | not))))
         | sort_by(-length)) as $matches
      | {kind: "crypto-mining", path: $byFile[.[0].file].path,
         detail: ("YARA " + .[0].rule + (if $matches == [] then "" else ": " + ($matches | join(", ")) end))[:500],
         deleted: $byFile[.[0].file].deleted, matches: $matches}) as $yaraIndicators
  | {volumeId: $volumeId, device: $device, readOnly: $readOnly,
    deviceSha256: $deviceSha256, deviceBytes: $deviceBytes, unchanged: $unchanged,
    afterCheck: {method: "sample", description: $afterCheck, blockBytes: 1048576,
                 offsets: $sampleOffsets, direct: $direct,
                 sampleSha256Before: $sampleBefore, sampleSha256After: $sampleAfter,
                 readOnlyAfter: $readOnlyAfter},
    analysisTime: $now,
    partitions: $partitions, fileSystems: $fileSystems,
    unreadable: (if $unreadable == "" then null else $unreadable end),
    lvm: $lvm, mounted: $mounted,
    recencyAnchor: {source: $anchorSource, epoch: $anchor},
    triageCap: {maxFiles: $maxFiles, maxBytes: $maxBytes, maxFileBytes: $maxFileBytes,
                skipped: $skipped, reason: (if $skipReason == "" then null else $skipReason end)},
    indicators: ($indicators + $yaraIndicators), indicatorsNotListed: $indicatorsNotListed,
    files: $files,
    toolErrors: $toolErrors[0], toolErrorsTotal: $toolErrorsTotal,
    unparsed: $unparsed, unparsedTotal: $unparsedTotal,
    tools: {sleuthkit: $tsk, yara: $yaraVersion}}' >"$out/findings.json"
rm -rf "$work" "$out/lvm.jsonl" "$out/mounted.jsonl"

if [[ "$unchanged" != true ]]; then
  echo "analyse-volume.sh: the device changed during the analysis (sample SHA-256 $sample_before before, $sample_after after; read-only flag $read_only_after)" >&2
  exit 1
fi
