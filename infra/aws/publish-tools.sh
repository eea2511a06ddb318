#!/usr/bin/env bash
# publish-tools.sh BUCKET AVML: puts what hosts download into the evidence
# bucket, each object with its SHA-256 checksum (S3 verifies it on write and
# keeps it; acquire-memory and run-forensics compare it before any URL is
# handed out):
#   tools/avml                      the AVML binary (prints its SHA-256: the
#                                   stack's AvmlSha256 parameter)
#   tools/host/*.sh, tools/host/rules/*.yar   the shipped host scripts and rules
# The bucket's default retention locks each version; a new version replaces
# what hosts get only once the stack's AvmlSha256 (for AVML) or the functions
# (for the scripts, whose hashes they carry) say so.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: publish-tools.sh BUCKET AVML" >&2; exit 2; }
bucket=$1 avml=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v aws >/dev/null || { echo "publish-tools.sh: the AWS CLI is needed" >&2; exit 3; }

put() {
  local file=$1 key=$2 checksum
  checksum=$(openssl dgst -sha256 -binary "$file" | base64)
  aws s3api put-object --bucket "$bucket" --key "$key" --body "$file" \
    --checksum-algorithm SHA256 --checksum-sha256 "$checksum" >/dev/null
  printf '%s  s3://%s/%s\n' "$(sha256sum "$file" | cut -d' ' -f1)" "$bucket" "$key"
}

for script in "$root"/infra/host/*.sh; do
  put "$script" "tools/host/$(basename "$script")"
done
for rules in "$root"/infra/host/rules/*.yar; do
  put "$rules" "tools/host/rules/$(basename "$rules")"
done
put "$avml" tools/avml
echo "AvmlSha256=$(sha256sum "$avml" | cut -d' ' -f1)  (sam deploy --parameter-overrides AvmlSha256=...)"
