#!/usr/bin/env bash
# The demo: the whole flow on the local stack. A GuardDuty crypto-mining
# finding about a seeded victim reaches the real dispatch Lambda, which starts
# the real state machine on the local Step Functions API. The demo policy sends
# the victim (tagged Environment=staging) to a person: the approval request
# arrives over SNS, `ec2-forensics approve` answers it, and the playbook runs:
# memory (the test bench's SSM agent plays the host, with a stand-in AVML),
# isolation, snapshots and forensic copies, the forensic workstation's
# analysis (the bench plays the workstation, with a stand-in disk), the report
# and the signed manifest, which `ec2-forensics verify` checks;
# `ec2-forensics report` prints the report. A second delivery of the finding
# starts nothing. Then the stack is stopped.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state="$root/.local/demo"
moto_port=${MOTO_PORT:-5055}
lambda_port=${LAMBDA_PORT:-9055}
sfn_port=${SFN_PORT:-9056}
url_port=${URL_PORT:-9057}
python="$root/.venv/bin/python"
cli="$root/target/debug/ec2-forensics"

"$root/infra/local/stack.sh" down "$state" 2>/dev/null || true
rm -rf "$state"
mkdir -p "$state"
trap '"$root/infra/local/stack.sh" down "$state"' EXIT

cat >"$state/policy.json" <<'POLICY'
{"approvalTags": [{"key": "Environment", "values": ["staging", "production"]}]}
POLICY

echo "==> starting the local stack (moto :$moto_port, cargo lambda watch :$lambda_port, Step Functions API :$sfn_port)"
POLICY_FILE="$state/policy.json" "$root/infra/local/stack.sh" up "$state" "$moto_port" "$lambda_port" "$sfn_port" "$url_port"
# The CLI uses the same configuration as the Lambdas.
set -a
# shellcheck disable=SC1091
source "$state/stack.env"
set +a
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

invoke() {
  "$root/.venv/bin/cargo-lambda" lambda invoke "$1" --invoke-address 127.0.0.1 \
    --invoke-port "$lambda_port" --output-format json --data-file "$2"
}

field() {
  "$python" -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[int(k)] if isinstance(v, list) else (v or {}).get(k)
print("" if v is None else v)' "$1"
}

echo "==> seeding a victim estate"
"$python" "$root/infra/local/seed.py" "http://127.0.0.1:$moto_port" --name demo >"$state/estate.json"
"$python" "$root/infra/local/show_case.py" estate "$state/estate.json"

echo "==> a GuardDuty finding arrives (CryptoCurrency:EC2/BitcoinTool.B!DNS); the GuardDutyFinding rule delivers it to dispatch"
"$python" "$root/infra/local/show_case.py" event \
  "$root/events/guardduty-crypto-mining-dns.json" "$state/estate.json" >"$state/event.json"
started=$(date +%s.%N)
invoke dispatch "$state/event.json" >"$state/dispatch.json"
case_id=$(field cases.0.caseId <"$state/dispatch.json")
execution=$(field cases.0.executionArn <"$state/dispatch.json")
echo "    case $case_id: execution $(field cases.0.status <"$state/dispatch.json")"

echo "==> the policy asks a person first (Environment=staging); waiting for the request"
for _ in $(seq 1 240); do
  "$cli" status --case-id "$case_id" >"$state/status.json" 2>/dev/null || true
  [[ "$(field awaitingApproval <"$state/status.json" 2>/dev/null)" == True ]] && break
  sleep 0.5
done
echo "    the request, as SNS delivered it to the SOC's inbox:"
"$python" "$root/infra/local/show_case.py" inbox "http://127.0.0.1:$moto_port" "$APPROVAL_INBOX_URL" |
  "$python" -c 'import json,sys; [print("      | " + l) for t in json.load(sys.stdin) for l in t.splitlines()]'

echo "==> the same finding delivered again"
invoke dispatch "$state/event.json" >"$state/again.json"
echo "    case $(field cases.0.caseId <"$state/again.json"): $(field cases.0.status <"$state/again.json") (no second execution)"

echo "==> ec2-forensics approve --case-id $case_id"
# An approver: an IAM identity allowed lambda:InvokeFunctionUrl on the
# approval function. The CLI signs with its credentials; AWS (here the bench)
# authenticates the signature and tells the function who approved.
"$python" "$root/infra/local/approver.py" "http://127.0.0.1:$moto_port" soc-on-call >"$state/approver.env"
(
  set -a
  # shellcheck disable=SC1091
  source "$state/approver.env"
  set +a
  echo "    as $APPROVER_ARN"
  "$cli" approve --case-id "$case_id" --reason "demo: SOC on call"
)

echo "==> waiting for the execution"
for _ in $(seq 1 600); do
  "$cli" status --case-id "$case_id" >"$state/status.json" 2>/dev/null || true
  [[ "$(field execution.status <"$state/status.json")" != "RUNNING" ]] && break
  sleep 0.5
done
finished=$(date +%s.%N)
"$python" "$root/infra/local/show_case.py" execution "http://127.0.0.1:$sfn_port" "$execution"
echo
echo "==> ec2-forensics status --case-id $case_id (snapshots and copies)"
"$python" -c 'import json,sys; s=json.load(open(sys.argv[1]))
print("    execution", s["execution"]["status"], "contained", s.get("contained"))
[print("    volume", v["volumeId"], "snapshot", v["snapshotId"], v["snapshot"], "-> copy", v.get("copy")) for v in s["volumes"]]' "$state/status.json"

echo
echo "==> ec2-forensics report --case-id $case_id"
"$cli" report --case-id "$case_id" | sed 's/^/    /'

echo
echo "==> ec2-forensics verify --case-id $case_id"
status=0
"$cli" verify --case-id "$case_id" || status=$?
elapsed=$("$python" -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$started" "$finished")
echo
echo "finding to sealed evidence: $elapsed s (approval wait and Lambda cold starts included)"
exit "$status"
