#!/usr/bin/env bash
# capture-memory.sh: the suspect host's memory, streamed to the evidence store
# without a single credential on the host.
#
# Usage: capture-memory.sh --avml-url URL --avml-sha256 HEX --part-size BYTES
#                          --part-url URL [--part-url URL ...] [--workdir DIR]
#
# Run by SSM Run Command on the suspect instance (document Ec2ForensicsRunScript,
# which passes every input as an environment variable, never as command text).
# Every URL is pre-signed by acquire-memory for one request on one object:
#   --avml-url    GET of the AVML binary in the evidence bucket's tools prefix;
#                 it runs only if its SHA-256 is --avml-sha256.
#   --part-url    UploadPart of parts 1..N, in order, of the one multipart upload of
#                 cases/<caseId>/memory/<instanceId>.lime; the image may use
#                 fewer parts, never more.
#
# AVML (0.21: `avml acquire --compress FILE`) writes the compressed image
# into a FIFO in DIR (default /dev/shm, which
# is memory, so nothing is written to the suspect's disks); the script cuts the
# stream into parts of --part-size bytes and uploads each with its Content-MD5,
# which S3 checks and which Object Lock requires (an unsigned Content-MD5 is
# allowed on a pre-signed request; an x-amz-checksum header would have to be
# signed, and the checksum is not known when the URL is made).
#
# The last line of standard output is the result, for check-command:
#   {"imageSize":N,"imageSha256":"hex","avmlSha256":"hex","partSize":N,
#    "parts":[{"partNumber":1,"size":N,"md5":"hex","etag":"..."}]}
# check-command completes the upload, and compares size, parts and SHA-256
# with what S3 stored before the image enters the manifest.
set -euo pipefail
umask 077

avml_url="" avml_sha256="" part_size="" workdir=/dev/shm
urls=()

usage() {
  echo "usage: capture-memory.sh --avml-url URL --avml-sha256 HEX --part-size BYTES --part-url URL... [--workdir DIR]" >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --avml-url) avml_url=${2:-}; shift 2 || usage ;;
    --avml-sha256) avml_sha256=${2:-}; shift 2 || usage ;;
    --part-size) part_size=${2:-}; shift 2 || usage ;;
    --part-url) urls+=("${2:-}"); shift 2 || usage ;;
    --workdir) workdir=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
if [[ -z "$avml_url" ]] || ((${#urls[@]} == 0)); then usage; fi
[[ "$avml_sha256" =~ ^[0-9a-f]{64}$ ]] || { echo "capture-memory.sh: --avml-sha256 is a hex SHA-256" >&2; exit 2; }
if ! [[ "$part_size" =~ ^[0-9]{1,12}$ ]] || ((part_size < 5242880)); then
  echo "capture-memory.sh: --part-size is a number of bytes, at least 5 MiB (S3's smallest part)" >&2
  exit 2
fi
for url in "$avml_url" "${urls[@]}"; do
  [[ "$url" =~ ^https://[!-~]+$ ]] || { echo "capture-memory.sh: not an https URL: ${url:0:40}..." >&2; exit 2; }
done
[[ -d "$workdir" ]] || { echo "capture-memory.sh: no directory $workdir" >&2; exit 2; }
for tool in curl sha256sum md5sum base64 dd mkfifo; do
  command -v "$tool" >/dev/null || { echo "capture-memory.sh: $tool is missing on this host" >&2; exit 3; }
done

work=$(mktemp -d "$workdir/ec2-forensics-memory.XXXXXX")
avml_pid=""
cleanup() {
  if [[ -n "$avml_pid" ]]; then kill "$avml_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The tool, checked before it runs.
curl -fsS --proto =https --retry 3 -o "$work/avml" "$avml_url"
echo "$avml_sha256  $work/avml" | sha256sum -c --quiet - \
  || { echo "capture-memory.sh: the AVML download does not have SHA-256 $avml_sha256: not run" >&2; exit 4; }
chmod 700 "$work/avml"

# 2. AVML -> FIFO -> tee (whole-image SHA-256) -> parts.
mkfifo "$work/image" "$work/hash"
sha256sum <"$work/hash" >"$work/image.sha256" &
hash_pid=$!
"$work/avml" acquire --compress "$work/image" &
avml_pid=$!

# base64 of a hex digest, without xxd or openssl (not on every host).
hex_to_base64() {
  local hex=$1 escaped=""
  while [[ -n "$hex" ]]; do
    escaped+="\\x${hex:0:2}"
    hex=${hex:2}
  done
  printf '%b' "$escaped" | base64
}

upload_parts() {
  local number=0 size md5 etag parts=""
  while :; do
    dd of="$work/part" bs=1M iflag=fullblock,count_bytes count="$part_size" status=none
    size=$(stat -c %s "$work/part")
    if ((size == 0 && number > 0)); then
      break
    fi
    if ((number >= ${#urls[@]})); then
      echo "capture-memory.sh: the image needs more than ${#urls[@]} parts of $part_size bytes" >&2
      return 5
    fi
    number=$((number + 1))
    md5=$(md5sum <"$work/part" | cut -d' ' -f1)
    curl -fsS --proto =https --retry 3 -X PUT --upload-file "$work/part" \
      -H "Content-MD5: $(hex_to_base64 "$md5")" \
      -D "$work/headers" -o /dev/null "${urls[$((number - 1))]}"
    etag=$(tr -d '\r' <"$work/headers" | sed -n 's/^[Ee][Tt][Aa][Gg]: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | tail -n 1)
    # S3 checked the Content-MD5 (BadDigest otherwise); under SSE-KMS a
    # part's ETag is not its MD5, so the ETag is recorded, not compared.
    [[ "$etag" =~ ^[0-9A-Za-z+/=-]{1,128}$ ]] || { echo "capture-memory.sh: part $number: S3 answered no ETag" >&2; return 6; }
    echo "$size" >>"$work/sizes"
    parts+="${parts:+,}{\"partNumber\":$number,\"size\":$size,\"md5\":\"$md5\",\"etag\":\"$etag\"}"
    if ((size < part_size)); then
      break
    fi
  done
  printf '%s' "$parts" >"$work/parts.json"
}

status=0
tee "$work/hash" <"$work/image" | upload_parts || status=$?
if ((status != 0)); then
  exit "$status"
fi
avml_status=0
wait "$avml_pid" || avml_status=$?
avml_pid=""
wait "$hash_pid"
if ((avml_status != 0)); then
  echo "capture-memory.sh: AVML failed (exit $avml_status): the uploaded parts are not a whole image" >&2
  exit 7
fi
total=0
while read -r size; do
  total=$((total + size))
done <"$work/sizes"
image_sha256=$(cut -d' ' -f1 <"$work/image.sha256")
printf '{"imageSize":%d,"imageSha256":"%s","avmlSha256":"%s","partSize":%d,"parts":[%s]}\n' \
  "$total" "$image_sha256" "$avml_sha256" "$part_size" "$(cat "$work/parts.json")"
