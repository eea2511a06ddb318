#!/usr/bin/env bash
# capture-memory.sh: the suspect host's memory, streamed to the evidence store
# without a single credential on the host.
#
# Usage: capture-memory.sh --avml-url URL --avml-sha256 HEX --part-size BYTES
#                          --part-list-url URL --part-list-sha256 HEX
#                          --upload-id ID [--streams N] [--source SOURCE]
#                          [--workdir DIR]
#
# Run by SSM Run Command on the suspect instance (document Ec2ForensicsRunScript,
# which passes every input as an environment variable, never as command text).
# Every URL is pre-signed by acquire-memory for one request on one object:
#   --avml-url       GET of the AVML binary in the evidence bucket's tools
#                    prefix; it runs only if its SHA-256 is --avml-sha256.
#   --part-list-url  GET of the part list (short-lived): one https URL per
#                    line, line N the UploadPart of part N of the one multipart
#                    upload (--upload-id) of cases/<caseId>/memory/<instanceId>.lime,
#                    up to S3's 10,000 parts. It is used only if its SHA-256 is
#                    --part-list-sha256. The image may use fewer parts, never
#                    more.
#   --upload-id      that upload: not used here, carried so that the command,
#                    as SSM lists it, says which upload it feeds.
#
# AVML (0.21: `avml acquire --compress --source SOURCE FILE`) writes the
# compressed image into a FIFO in DIR (default /dev/shm, which is memory, so
# nothing is written to the suspect's disks). The source is always explicit
# (--source, else the first of /proc/kcore, /dev/crash, /dev/mem this host
# offers): without one, AVML tries the next source after a failure and
# reopens its output, which on a FIFO would append a second image to the
# first. The script cuts the stream into parts of --part-size bytes and
# uploads up to --streams (default 4) at a time; at most that many parts are
# held in DIR at once, so DIR holds at most streams x part size. Each part is
# sent with its Content-MD5, which S3 checks and which Object Lock requires
# (an unsigned Content-MD5 is allowed on a pre-signed request; an
# x-amz-checksum header would have to be signed, and the checksum is not known
# when the URL is made), and tried up to 5 times (1, 2, 4, 8 s apart: a URL
# that has expired keeps failing and the capture fails).
#
# Exit codes: 2 bad arguments or a URL that is not https, 3 a tool or a
# memory source missing on this host, 4 AVML or the part list is not what
# its SHA-256 says, 5 the image needs more parts than the list has, 6 a part
# was not uploaded, 7 AVML failed or wrote nothing, 8 a download failed,
# 9 the work directory could not hold a part; anything else is 1.
#
# The last line of standard output is the result, for check-command:
#   {"imageSize":N,"imageSha256":"hex","avmlSha256":"hex","partSize":N,
#    "streams":N,"source":"/proc/kcore",
#    "parts":[{"partNumber":1,"size":N,"md5":"hex","etag":"..."}]}
# check-command completes the upload, and compares size, parts and SHA-256
# with what S3 stored before the image enters the manifest.
set -euo pipefail
umask 077

avml_url="" avml_sha256="" part_size="" workdir=/dev/shm
part_list_url="" part_list_sha256="" upload_id="" streams=4 source=""
readonly max_parts=10000 attempts=5

usage() {
  echo "usage: capture-memory.sh --avml-url URL --avml-sha256 HEX --part-size BYTES --part-list-url URL --part-list-sha256 HEX --upload-id ID [--streams N] [--source SOURCE] [--workdir DIR]" >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --avml-url) avml_url=${2:-}; shift 2 || usage ;;
    --avml-sha256) avml_sha256=${2:-}; shift 2 || usage ;;
    --part-size) part_size=${2:-}; shift 2 || usage ;;
    --part-list-url) part_list_url=${2:-}; shift 2 || usage ;;
    --part-list-sha256) part_list_sha256=${2:-}; shift 2 || usage ;;
    --upload-id) upload_id=${2:-}; shift 2 || usage ;;
    --streams) streams=${2:-}; shift 2 || usage ;;
    --source) source=${2:-}; shift 2 || usage ;;
    --workdir) workdir=${2:-}; shift 2 || usage ;;
    *) usage ;;
  esac
done
if [[ -z "$avml_url" || -z "$part_list_url" || -z "$upload_id" ]]; then usage; fi
[[ "$avml_sha256" =~ ^[0-9a-f]{64}$ ]] || { echo "capture-memory.sh: --avml-sha256 is a hex SHA-256" >&2; exit 2; }
[[ "$part_list_sha256" =~ ^[0-9a-f]{64}$ ]] || { echo "capture-memory.sh: --part-list-sha256 is a hex SHA-256" >&2; exit 2; }
[[ "$upload_id" =~ ^[!-~]{1,1024}$ ]] || { echo "capture-memory.sh: --upload-id is printable ASCII" >&2; exit 2; }
if ! [[ "$part_size" =~ ^[0-9]{1,12}$ ]] || ((part_size < 5242880)); then
  echo "capture-memory.sh: --part-size is a number of bytes, at least 5 MiB (S3's smallest part)" >&2
  exit 2
fi
if ! [[ "$streams" =~ ^[0-9]{1,2}$ ]] || ((streams < 1 || streams > 16)); then
  echo "capture-memory.sh: --streams is 1 to 16" >&2
  exit 2
fi
case "$source" in
  "" | /proc/kcore | /dev/crash | /dev/mem) ;;
  *) echo "capture-memory.sh: --source is /proc/kcore, /dev/crash or /dev/mem" >&2; exit 2 ;;
esac
https_url() {
  [[ "$1" =~ ^https://[!-~]+$ ]] || { echo "capture-memory.sh: not an https URL: ${1:0:40}..." >&2; return 2; }
}
https_url "$avml_url"
https_url "$part_list_url"
[[ -d "$workdir" ]] || { echo "capture-memory.sh: no directory $workdir" >&2; exit 2; }
for tool in curl sha256sum md5sum base64 dd mkfifo stat; do
  command -v "$tool" >/dev/null || { echo "capture-memory.sh: $tool is missing on this host" >&2; exit 3; }
done
if [[ -z "$source" ]]; then
  for candidate in /proc/kcore /dev/crash /dev/mem; do
    if [[ -r "$candidate" ]]; then source=$candidate; break; fi
  done
  [[ -n "$source" ]] || { echo "capture-memory.sh: none of /proc/kcore, /dev/crash, /dev/mem is readable: no memory source" >&2; exit 3; }
fi

work=$(mktemp -d "$workdir/ec2-forensics-memory.XXXXXX")
avml_pid=""
cleanup() {
  if [[ -n "$avml_pid" ]]; then kill "$avml_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The tool and the part list, each checked before use.
fetch_checked() { # url sha256 file what
  curl -fsS --proto =https --retry 3 -o "$3" "$1" \
    || { echo "capture-memory.sh: the $4 download failed (curl exit $?)" >&2; return 8; }
  echo "$2  $3" | sha256sum -c --quiet - \
    || { echo "capture-memory.sh: the $4 download does not have SHA-256 $2: not used" >&2; return 4; }
}
fetch_checked "$avml_url" "$avml_sha256" "$work/avml" AVML
chmod 700 "$work/avml"
fetch_checked "$part_list_url" "$part_list_sha256" "$work/parts.list" "part list"
mapfile -t urls <"$work/parts.list"
if ((${#urls[@]} == 0 || ${#urls[@]} > max_parts)); then
  echo "capture-memory.sh: the part list has ${#urls[@]} URLs, not 1 to $max_parts" >&2
  exit 2
fi
for url in "${urls[@]}"; do https_url "$url"; done

# 2. AVML -> FIFO -> tee (whole-image SHA-256) -> FIFO -> parts, `streams`
# at a time.
mkfifo "$work/image" "$work/hash" "$work/stream" "$work/slots"
sha256sum <"$work/hash" >"$work/image.sha256" &
hash_pid=$!
# AVML, and after it ends, one open of its FIFO for writing: a reader still
# waiting to open it (AVML failed before opening its output) is let go and
# reads an empty stream, so the script never hangs on a tool that did not
# start. Killed, it takes AVML with it.
run_avml() {
  local code=0 pid
  "$work/avml" acquire --compress --source "$source" "$work/image" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; exit 143' TERM
  wait "$pid" || code=$?
  : 1<>"$work/image"
  return "$code"
}
run_avml &
avml_pid=$!
tee "$work/hash" <"$work/image" >"$work/stream" &
tee_pid=$!

# base64 of a hex digest, without xxd or openssl (not on every host).
hex_to_base64() {
  local hex=$1 escaped=""
  while [[ -n "$hex" ]]; do
    escaped+="\\x${hex:0:2}"
    hex=${hex:2}
  done
  printf '%b' "$escaped" | base64
}

# Uploads part $1 from $work/part.$1, writing its result to $work/result.$1.
# curl and the pauses between attempts run in the background and are waited
# for, so that a TERM (the capture failed) ends them at once.
upload_part() {
  local number=$1 file="$work/part.$1" md5 etag size attempt=1 delay=1
  size=$(stat -c %s "$file")
  md5=$(md5sum <"$file" | cut -d' ' -f1)
  until
    curl -fsS --proto =https --connect-timeout 10 --speed-limit 1024 --speed-time 60 \
      -X PUT --upload-file "$file" -H "Content-MD5: $(hex_to_base64 "$md5")" \
      -D "$work/headers.$number" -o /dev/null "${urls[$((number - 1))]}" &
    wait "$!"
  do
    if ((attempt >= attempts)); then
      echo "capture-memory.sh: part $number: not uploaded after $attempt attempts" >&2
      return 6
    fi
    sleep "$delay" &
    wait "$!"
    attempt=$((attempt + 1)) delay=$((delay * 2))
  done
  etag=$(tr -d '\r' <"$work/headers.$number" | sed -n 's/^[Ee][Tt][Aa][Gg]: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | tail -n 1)
  # S3 checked the Content-MD5 (BadDigest otherwise); under SSE-KMS a
  # part's ETag is not its MD5, so the ETag is recorded, not compared.
  [[ "$etag" =~ ^[0-9A-Za-z+/=-]{1,128}$ ]] || { echo "capture-memory.sh: part $number: S3 answered no ETag" >&2; return 6; }
  printf '{"partNumber":%d,"size":%d,"md5":"%s","etag":"%s"}' "$number" "$size" "$md5" "$etag" >"$work/result.$number"
}

# An upload's end: its part leaves the buffer, and its slot goes back with
# its exit status.
slot_back() {
  local code=$?
  rm -f "$work/part.$1" "$work/headers.$1"
  echo "$code" >&8
}

# Reads the image from standard input part by part. A slot is a line in the
# FIFO $work/slots: `streams` of them circulate, each upload gives its slot
# back with its exit status when it ends, and the next part is read only
# into a free slot, so at most `streams` parts are held at once. Sets `count`
# to the number of parts.
upload_parts() {
  local number=0 size held=0 status=0 token i
  exec 8<>"$work/slots"
  for ((i = 0; i < streams; i++)); do echo 0 >&8; done
  while :; do
    read -r token <&8
    held=1
    if ((token != 0)); then status=$token; break; fi
    if ! dd of="$work/part.$((number + 1))" bs=1M iflag=fullblock,count_bytes count="$part_size" status=none; then
      echo "capture-memory.sh: part $((number + 1)) could not be held in $workdir" >&2
      status=9
      break
    fi
    size=$(stat -c %s "$work/part.$((number + 1))")
    if ((size == 0)); then
      rm -f "$work/part.$((number + 1))"
      break
    fi
    if ((number >= ${#urls[@]})); then
      echo "capture-memory.sh: the image needs more than ${#urls[@]} parts of $part_size bytes" >&2
      status=5
      break
    fi
    number=$((number + 1))
    (
      trap 'slot_back "$number"' EXIT
      trap 'kill $(jobs -p) 2>/dev/null; exit 143' TERM
      upload_part "$number"
    ) </dev/null &
    held=0
    if ((size < part_size)); then
      break
    fi
  done
  if ((status == 0)); then
    # Every slot comes back; each says how its last upload ended.
    for ((i = held; i < streams; i++)); do
      read -r token <&8
      if ((token != 0 && status == 0)); then status=$token; fi
    done
  fi
  ((status == 0)) || return "$status"
  for ((i = 1; i <= number; i++)); do
    [[ -s "$work/result.$i" ]] || { echo "capture-memory.sh: part $i has no result" >&2; return 6; }
  done
  count=$number
}

# The capture failed: AVML, tee, the hash and every upload still running
# are stopped before the script exits.
stop_all() {
  # shellcheck disable=SC2046 # one pid per word
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  avml_pid=""
}

status=0 count=0
upload_parts <"$work/stream" || status=$?
if ((status != 0)); then
  stop_all
  exit "$status"
fi
avml_status=0
wait "$avml_pid" || avml_status=$?
avml_pid=""
wait "$tee_pid" || true
wait "$hash_pid"
if ((avml_status != 0)); then
  echo "capture-memory.sh: AVML failed (exit $avml_status): the uploaded parts are not a whole image" >&2
  exit 7
fi
if ((count == 0)); then
  echo "capture-memory.sh: AVML wrote no image" >&2
  exit 7
fi
total=0 parts=""
for ((i = 1; i <= count; i++)); do
  part=$(cat "$work/result.$i")
  parts+="${parts:+,}$part"
  size=${part#*\"size\":}
  total=$((total + ${size%%,*}))
done
image_sha256=$(cut -d' ' -f1 <"$work/image.sha256")
printf '{"imageSize":%d,"imageSha256":"%s","avmlSha256":"%s","partSize":%d,"streams":%d,"source":"%s","parts":[%s]}\n' \
  "$total" "$image_sha256" "$avml_sha256" "$part_size" "$streams" "$source" "$parts"
