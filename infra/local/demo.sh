#!/usr/bin/env bash
# The demo: start the local stack, seed a victim estate, send a GuardDuty
# crypto-mining finding about the victim into the real state machine (the
# Lambdas run behind cargo lambda watch), print the Case, stop the stack.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state="$root/.local/demo"
moto_port=${MOTO_PORT:-5055}
lambda_port=${LAMBDA_PORT:-9055}
python="$root/.venv/bin/python"

"$root/infra/local/stack.sh" down "$state" 2>/dev/null || true
rm -rf "$state"
mkdir -p "$state"
trap '"$root/infra/local/stack.sh" down "$state"' EXIT

echo "==> starting the local stack (moto on :$moto_port, cargo lambda watch on :$lambda_port)"
"$root/infra/local/stack.sh" up "$state" "$moto_port" "$lambda_port"

echo "==> seeding a victim estate"
"$python" "$root/infra/local/seed.py" "http://127.0.0.1:$moto_port" --name demo >"$state/estate.json"
"$python" "$root/infra/local/show_case.py" estate "$state/estate.json"

echo "==> a GuardDuty finding arrives: CryptoCurrency:EC2/BitcoinTool.B!DNS"
"$python" "$root/infra/local/show_case.py" event \
  "$root/events/guardduty-crypto-mining-dns.json" "$state/estate.json" >"$state/event.json"
case_id=$("$root/target/debug/ec2-forensics" triage --event "$state/event.json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["caseId"])')
echo "    case $case_id (the execution name: a second delivery of this finding is refused)"

echo "==> running statemachine/forensics.asl.json"
started=$(date +%s.%N)
status=0
"$root/infra/local/runner/node_modules/.bin/node" "$root/infra/local/runner/run.mjs" \
  --definition "$root/statemachine/forensics.asl.json" \
  --input "$state/event.json" \
  --lambda-endpoint "http://127.0.0.1:$lambda_port" \
  --name "$case_id" >"$state/execution.json" || status=$?
finished=$(date +%s.%N)

"$python" "$root/infra/local/show_case.py" case "$state/execution.json"
echo
elapsed=$("$python" -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$started" "$finished")
echo "execution wall time (including Lambda cold starts): $elapsed s"
echo "the whole Case: $state/execution.json"
exit "$status"
