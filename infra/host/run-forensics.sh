#!/usr/bin/env bash
# run-forensics.sh: the forensic process on the forensic workstation, for
# every evidence volume attached to it, then the upload of the results.
#
# Usage: run-forensics.sh
#          --tool NAME --tool-url URL --tool-sha256 HEX   (analyse-volume.sh,
#                                                          map-device.sh,
#                                                          crypto-mining.yar)
#          --archive-part-size BYTES
#          --volume vol-... --findings-url URL                        (repeated)
#            --archive-part-list-url URL --archive-part-list-sha256 HEX
#            --archive-upload-id ID
#            [--reference-time EPOCH]   (its snapshot's start, the anchor of
#                                        the recency window)
#
# Run by SSM Run Command (document Ec2ForensicsRunScript: every input is an
# environment variable, never command text). Each tool comes over a
# pre-signed GET and is used only if its SHA-256 is the one given. Each
# volume is found by its NVMe serial (map-device.sh), never by the device
# name it was attached as, and analysed by analyse-volume.sh, which makes it
# read-only before anything reads it, hashes it in one pass while the
# analysis reads it, and checks a sample of blocks after. Volumes are
# analysed in parallel, one per vCPU. Each analysis runs offline; as soon as
# one ends, its results go up while the other volumes are still analysed:
# findings.json to its pre-signed PUT, and a tar of its result directory
# (timeline, body file, extracted files) as parts of --archive-part-size
# bytes, one part after the other, to the UploadPart URLs of the volume's
# part list (one https URL per line, part N on line N, used only if its
# SHA-256 is the one given; --archive-upload-id is carried so that the
# command, as SSM lists it, says which upload it feeds). Every PUT carries
# its Content-MD5 (Object Lock).
#
# The last line of standard output is the result, for check-command:
#   {"volumes":[{"volumeId","status":"analysed"|"failed","device","error",
#     "findings":{"size","sha256"},
#     "archive":{"size","sha256","partSize","parts":[{"partNumber","size",
#                "md5","etag"}]},
#     "indicators":N,"unchanged":bool}]}

set -euo pipefail
umask 077

declare -A tool_url=() tool_sha=()
volumes=() findings_urls=() list_urls=() list_sha256s=() upload_ids=()
archive_part_size=""
declare -A reference_time=()
name=""

usage() {
  echo "usage: run-forensics.sh --tool NAME --tool-url URL --tool-sha256 HEX ... --archive-part-size BYTES --volume vol-... --findings-url URL --archive-part-list-url URL --archive-part-list-sha256 HEX --archive-upload-id ID ..." >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --tool) name=${2:-}; shift 2 || usage ;;
    --tool-url) [[ -n "$name" ]] || usage; tool_url[$name]=${2:-}; shift 2 || usage ;;
    --tool-sha256) [[ -n "$name" ]] || usage; tool_sha[$name]=${2:-}; shift 2 || usage ;;
    --volume) volumes+=("${2:-}"); shift 2 || usage ;;
    --findings-url) findings_urls+=("${2:-}"); shift 2 || usage ;;
    --archive-part-size) archive_part_size=${2:-}; shift 2 || usage ;;
    --archive-part-list-url) list_urls+=("${2:-}"); shift 2 || usage ;;
    --archive-part-list-sha256) list_sha256s+=("${2:-}"); shift 2 || usage ;;
    --archive-upload-id) upload_ids+=("${2:-}"); shift 2 || usage ;;
    --reference-time)
      ((${#volumes[@]})) || usage
      [[ "${2:-}" =~ ^[0-9]{1,12}$ ]] || usage
      reference_time[${#volumes[@]}]=$2
      shift 2
      ;;
    *) usage ;;
  esac
done
((${#volumes[@]} > 0)) || usage
if ((${#findings_urls[@]} != ${#volumes[@]} || ${#list_urls[@]} != ${#volumes[@]} \
  || ${#list_sha256s[@]} != ${#volumes[@]} || ${#upload_ids[@]} != ${#volumes[@]})); then
  echo "run-forensics.sh: every --volume needs its --findings-url, --archive-part-list-url, --archive-part-list-sha256 and --archive-upload-id" >&2
  exit 2
fi
# Whole MiB, at least S3's smallest part.
if ! [[ "$archive_part_size" =~ ^[0-9]{1,12}$ ]] || ((archive_part_size < 5242880 || archive_part_size % 1048576)); then
  echo "run-forensics.sh: --archive-part-size is a whole number of MiB, at least 5" >&2
  exit 2
fi
for sha in "${list_sha256s[@]}"; do
  [[ "$sha" =~ ^[0-9a-f]{64}$ ]] || { echo "run-forensics.sh: --archive-part-list-sha256 is a hex SHA-256" >&2; exit 2; }
done
for id in "${upload_ids[@]}"; do
  [[ "$id" =~ ^[!-~]{1,1024}$ ]] || { echo "run-forensics.sh: --archive-upload-id is printable ASCII" >&2; exit 2; }
done
for tool in analyse-volume.sh map-device.sh crypto-mining.yar; do
  [[ -n "${tool_url[$tool]:-}" && "${tool_sha[$tool]:-}" =~ ^[0-9a-f]{64}$ ]] \
    || { echo "run-forensics.sh: no URL and SHA-256 for $tool" >&2; exit 2; }
done
for volume in "${volumes[@]}"; do
  [[ "$volume" =~ ^vol-[0-9a-f]{8,17}$ ]] || { echo "run-forensics.sh: $volume is not a volume id" >&2; exit 2; }
done
# Pre-signed S3 URLs only, over TLS (curl is also held to https below).
for url in "${tool_url[@]}" "${findings_urls[@]}" "${list_urls[@]}"; do
  [[ "$url" =~ ^https://[!-~]+$ ]] || { echo "run-forensics.sh: not an https URL: ${url:0:40}..." >&2; exit 2; }
done
for tool in curl jq sha256sum md5sum base64 tar; do
  command -v "$tool" >/dev/null || { echo "run-forensics.sh: $tool is missing on this workstation" >&2; exit 3; }
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ec2-forensics-analysis.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/tools" "$work/out"

# 1. The tools, checked before they are used.
for tool in "${!tool_url[@]}"; do
  [[ "$tool" =~ ^[a-z0-9.-]+$ ]] || { echo "run-forensics.sh: bad tool name" >&2; exit 2; }
  curl -fsS --proto =https --retry 3 -o "$work/tools/$tool" "${tool_url[$tool]}"
  echo "${tool_sha[$tool]}  $work/tools/$tool" | sha256sum -c --quiet - \
    || { echo "run-forensics.sh: $tool does not have SHA-256 ${tool_sha[$tool]}: not used" >&2; exit 4; }
done

# base64 of a hex digest, without xxd or openssl.
hex_to_base64() {
  local hex=$1 escaped=""
  while [[ -n "$hex" ]]; do
    escaped+="\\x${hex:0:2}"
    hex=${hex:2}
  done
  printf '%b' "$escaped" | base64
}

# 3 (defined first). The upload of one volume's results: findings.json to
# its pre-signed PUT, the archive in parts to the URLs of its part list.
# put FILE URL [HEADERS-FILE]: one PUT with the file's Content-MD5.
put() {
  local file=$1 url=$2 headers=${3:-/dev/null} md5
  md5=$(md5sum <"$file" | cut -d' ' -f1)
  curl -fsS --proto =https --retry 3 -X PUT --upload-file "$file" \
    -H "Content-MD5: $(hex_to_base64 "$md5")" -D "$headers" -o /dev/null "$url"
}

# upload_archive INDEX FILE: the archive of volume INDEX, part after part;
# writes the parts' JSON list to FILE.parts.json.
upload_archive() {
  local index=$1 file=$2 list="$work/archive.$1.list" part="$work/archive.$1.part"
  local headers="$work/archive.$1.headers" size count number etag md5 parts="" urls=()
  curl -fsS --proto =https --retry 3 -o "$list" "${list_urls[$index]}" || return 1
  echo "${list_sha256s[$index]}  $list" | sha256sum -c --quiet - \
    || { echo "run-forensics.sh: the part list of ${volumes[$index]} does not have SHA-256 ${list_sha256s[$index]}: not used" >&2; return 1; }
  mapfile -t urls <"$list"
  for url in "${urls[@]}"; do
    [[ "$url" =~ ^https://[!-~]+$ ]] || { echo "run-forensics.sh: not an https URL in the part list" >&2; return 1; }
  done
  size=$(stat -c %s "$file")
  count=$(((size + archive_part_size - 1) / archive_part_size))
  ((count >= 1)) || count=1
  if ((count > ${#urls[@]})); then
    echo "run-forensics.sh: the archive of ${volumes[$index]} ($size bytes) needs more than ${#urls[@]} parts" >&2
    return 1
  fi
  for ((number = 1; number <= count; number++)); do
    dd if="$file" of="$part" bs=1M skip=$(((number - 1) * archive_part_size / 1048576)) \
      count=$((archive_part_size / 1048576)) status=none \
      || { echo "run-forensics.sh: part $number of the archive of ${volumes[$index]} could not be cut" >&2; return 1; }
    md5=$(md5sum <"$part" | cut -d' ' -f1)
    put "$part" "${urls[$((number - 1))]}" "$headers" || return 1
    etag=$(tr -d '\r' <"$headers" | sed -n 's/^[Ee][Tt][Aa][Gg]: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | tail -n 1)
    [[ "$etag" =~ ^[0-9A-Za-z+/=-]{1,128}$ ]] || { echo "run-forensics.sh: part $number: S3 answered no ETag" >&2; return 1; }
    parts+="${parts:+,}{\"partNumber\":$number,\"size\":$(stat -c %s "$part"),\"md5\":\"$md5\",\"etag\":\"$etag\"}"
  done
  rm -f "$part" "$headers"
  printf '[%s]' "$parts" >"$file.parts.json"
}

# 2. One volume: found by its serial, analysed offline, then its results
# uploaded at once (the analysis itself never touches the network). Writes
# its line of the summary to $work/summary.<index>.
process_volume() {
  local index=$1 volume=${volumes[$1]} device="" error="" anchor=() line
  local out="$work/out/${volumes[$1]}" log="$work/analyse.$1.log" map_err="$work/map.$1.err"
  # The recency window starts from the volume's snapshot, when given.
  if [[ -n "${reference_time[$((index + 1))]:-}" ]]; then
    anchor=(--reference-time "${reference_time[$((index + 1))]}")
  fi
  # A device appears a few seconds after EBS reports it attached.
  for _ in 1 2 3 4 5; do
    if device=$(bash "$work/tools/map-device.sh" --volume-id "$volume" 2>"$map_err"); then
      break
    fi
    device=""
    sleep 2
  done
  if [[ -z "$device" ]]; then
    error="no NVMe device with serial ${volume/-/}: $(tr '\n' ' ' <"$map_err")"
  elif ! bash "$work/tools/analyse-volume.sh" --device "$device" --volume-id "$volume" \
    --out "$out" --rules "$work/tools/crypto-mining.yar" "${anchor[@]}" >"$log" 2>&1; then
    error="analyse-volume.sh failed: $(tail -n 5 "$log" | tr '\n' ' ')"
  fi
  line=$(jq -nc --arg volumeId "$volume" --arg device "$device" --arg error "$error" \
    '{volumeId: $volumeId, device: $device, error: $error}')
  if [[ -n "$error" ]]; then
    jq -c '. + {status: "failed"}' <<<"$line" >"$work/summary.$index"
    return 0
  fi
  tar -C "$out" -cf "$work/$volume.tar" .
  if put "$out/findings.json" "${findings_urls[$index]}" \
    && upload_archive "$index" "$work/$volume.tar"; then
    jq -c --arg fsha "$(sha256sum <"$out/findings.json" | cut -d' ' -f1)" \
      --argjson fsize "$(stat -c %s "$out/findings.json")" \
      --arg asha "$(sha256sum <"$work/$volume.tar" | cut -d' ' -f1)" \
      --argjson asize "$(stat -c %s "$work/$volume.tar")" \
      --argjson partSize "$archive_part_size" --slurpfile parts "$work/$volume.tar.parts.json" \
      --slurpfile f "$out/findings.json" \
      '. + {status: "analysed", findings: {size: $fsize, sha256: $fsha},
            archive: {size: $asize, sha256: $asha, partSize: $partSize, parts: $parts[0]},
            indicators: ($f[0].indicators | length), unchanged: $f[0].unchanged}' \
      <<<"$line" >"$work/summary.$index"
  else
    jq -c '. + {status: "failed", error: "the upload failed"}' <<<"$line" >"$work/summary.$index"
  fi
  # The volume's results are uploaded: the local copies go.
  rm -rf "$out" "$work/$volume.tar" "$work/$volume.tar.parts.json"
}

# Volumes are analysed in parallel, one per vCPU (the workstation's type is
# chosen for its EBS bandwidth), at most as many as there are volumes. A slot
# is a line in the FIFO $work/slots; each volume takes one and gives it back
# when it ends.
parallel=$(nproc 2>/dev/null || echo 1)
[[ "$parallel" =~ ^[0-9]+$ ]] && ((parallel >= 1)) || parallel=1
((parallel <= ${#volumes[@]})) || parallel=${#volumes[@]}
mkfifo "$work/slots"
exec 7<>"$work/slots"
for ((i = 0; i < parallel; i++)); do echo >&7; done
for index in "${!volumes[@]}"; do
  read -r _ <&7
  (
    trap 'echo >&7' EXIT
    process_volume "$index"
  ) </dev/null &
done
wait
for index in "${!volumes[@]}"; do
  if [[ -s "$work/summary.$index" ]]; then
    cat "$work/summary.$index"
  else
    jq -nc --arg volumeId "${volumes[$index]}" \
      '{volumeId: $volumeId, device: "", error: "the analysis of this volume ended without a result", status: "failed"}'
  fi
done | jq -sc '{volumes: .}'
