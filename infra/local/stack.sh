#!/usr/bin/env bash
# The local AWS stack: the moto server (the emulated AWS API), `cargo lambda
# watch` (the real Lambda binaries behind the Lambda Invoke API) and the local
# Step Functions API (infra/local/runner/serve.mjs: the real definition, run
# by aws-local-stepfunctions, started by dispatch and answered by the CLI).
#
# Usage: stack.sh up|down STATE_DIR MOTO_PORT LAMBDA_PORT [SFN_PORT] [URL_PORT] [S3_TLS_PORT]
#   up    starts all three on 127.0.0.1, waits until they answer, records pids in STATE_DIR;
#         the approval and start functions' URLs (AWS_IAM, SigV4 checked)
#         are served by the moto bench on URL_PORT and named in stack.env as
#         APPROVAL_URL, START_URL and RECOVERY_URL
#         the emulator's S3 also answers over HTTPS on S3_TLS_PORT (certificate
#         from the bench CA, target/bench-tls/ca.pem)
#         exits 3 when a port is another process's (everything started is stopped)
#   down  stops what `up` started in STATE_DIR
# The Lambdas get AWS_ENDPOINT_URL pointing at the emulator (S3 over HTTPS,
# AWS_ENDPOINT_URL_S3, trusting the bench CA through SSL_CERT_FILE: every
# pre-signed URL they hand a host is https, as on AWS),
# AWS_ENDPOINT_URL_SFN and STATE_MACHINE_ARN pointing at the local Step
# Functions API, dummy credentials, the forensic side's configuration, and
# POLICY_FILE when it is set in the caller's environment. STATE_DIR/stack.env
# holds the same variables for the CLI and the tests.
# Each Lambda signs with a key of its own (function-credentials.sh, through
# the credential_process of STATE_DIR/aws-config): the emulator knows the
# caller. With EC2_FORENSICS_BENCH_RECORD naming a file, the moto bench
# appends every request to it, and this script appends the stack's forensic
# configuration (which key, bucket, document is which) as a line of its own.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
action=${1:?usage: stack.sh up|down STATE_DIR MOTO_PORT LAMBDA_PORT}
state=${2:?state directory}
moto_port=${3:-5050}
lambda_port=${4:-9050}
sfn_port=${5:-$((lambda_port + 1))}
url_port=${6:-$((sfn_port + 1))}
tls_port=${7:-$((url_port + 1))}
tls_dir="$root/target/bench-tls"
region=${AWS_REGION:-us-east-1}
state_machine_arn="arn:aws:states:$region:123456789012:stateMachine:forensics"

# Waits until PORT answers and the process PID that should serve it is
# still alive a second later. A server that cannot bind its port (another
# process took it after the caller found it free) exits: then everything
# started is stopped and stack.sh exits 3, so the caller can pick new ports.
wait_for_port() {
  local port=$1 what=$2 log=$3 pid=$4
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 1
      if kill -0 "$pid" 2>/dev/null; then
        return 0
      fi
      break
    fi
    sleep 0.2
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "stack.sh: $what exited (port $port taken by another process?); its log:" >&2
    tail -n 30 "$log" >&2
    down
    exit 3
  fi
  echo "stack.sh: $what did not start on port $port; its log:" >&2
  tail -n 30 "$log" >&2
  down
  return 1
}

up() {
  mkdir -p "$state"
  local run_id
  run_id="$(basename "$state")-$moto_port"
  EC2_FORENSICS_BENCH_TLS_PORT=$tls_port EC2_FORENSICS_BENCH_TLS_DIR=$tls_dir \
    EC2_FORENSICS_BENCH_DEVICES="$state/devices.jsonl" EC2_FORENSICS_BENCH_RUN_ID=$run_id EC2_FORENSICS_BENCH_URL_PORT=$url_port EC2_FORENSICS_BENCH_LAMBDA_ENDPOINT="http://127.0.0.1:$lambda_port" \
    "$root/.venv/bin/python" "$root/infra/local/moto_bench.py" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for_port "$moto_port" "the moto server" "$state/moto.log" "$(cat "$state/moto.pid")"
  # The port answers, but whose server is it? Ours names this run.
  local answered=""
  for _ in $(seq 1 100); do
    answered=$("$root/.venv/bin/python" -c 'import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())
except Exception:
    print("")' "http://127.0.0.1:$moto_port/ec2-forensics-bench/run")
    if [[ "$answered" == "$run_id" ]] || ! kill -0 "$(cat "$state/moto.pid")" 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
  if [[ "$answered" != "$run_id" ]]; then
    echo "stack.sh: port $moto_port is another server's (it answered ${answered:-nothing}, not $run_id); its log:" >&2
    tail -n 30 "$state/moto.log" >&2
    down
    exit 3
  fi
  wait_for_port "$tls_port" "the moto server's HTTPS S3" "$state/moto.log" "$(cat "$state/moto.pid")"
  wait_for_port "$url_port" "the moto server's function URLs" "$state/moto.log" "$(cat "$state/moto.pid")"
  # The forensic account's side (keys, the locked evidence bucket): the
  # Lambdas' configuration, also left in STATE_DIR/forensic.env for tests.
  "$root/.venv/bin/python" "$root/infra/local/forensic.py" "http://127.0.0.1:$moto_port" \
    --region "$region" --env >"$state/forensic.env"
  {
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port"
    echo "AWS_ENDPOINT_URL_S3=https://127.0.0.1:$tls_port"
    echo "SSL_CERT_FILE=$tls_dir/ca.pem"
    echo "AWS_ENDPOINT_URL_SFN=http://127.0.0.1:$sfn_port"
    echo "STATE_MACHINE_ARN=$state_machine_arn"
    echo "BULK_STATE_MACHINE_ARN=${state_machine_arn%:forensics}:bulk"
    echo "APPROVAL_URL=http://127.0.0.1:$url_port/answer-approval/"
    echo "START_URL=http://127.0.0.1:$url_port/start-run/"
    echo "RECOVERY_URL=http://127.0.0.1:$url_port/cleanup-case/"
    echo "AWS_REGION=$region"
    cat "$state/forensic.env"
  } >"$state/stack.env"
  if [[ -n "${EC2_FORENSICS_BENCH_RECORD:-}" ]]; then
    "$root/.venv/bin/python" -c 'import json, os, sys
env = dict(line.rstrip("\n").split("=", 1) for line in open(sys.argv[2]) if "=" in line)
env.update({k: os.environ[k] for k in ("WORKLOAD_ROLE_NAME", "ALLOWED_ACCOUNTS") if os.environ.get(k)})
print(json.dumps({"run": sys.argv[1], "stack": env}, sort_keys=True))' "$run_id" "$state/stack.env" \
      >>"$EC2_FORENSICS_BENCH_RECORD"
  fi
  printf '[default]\ncredential_process = %s\n' "$root/infra/local/function-credentials.sh" >"$state/aws-config"

  (
    cd "$root"
    # A test process carries the variables cargo sets for the crate under test
    # (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...). Some build scripts (ring) rerun
    # when those differ from the last build, which would make the `cargo run`
    # behind every Lambda rebuild the whole SDK. Start from a clean slate.
    while IFS= read -r var; do
      unset "$var"
    done < <(compgen -e | grep -E '^(CARGO_(PKG|MANIFEST|CRATE|BIN|PRIMARY|TARGET_TMPDIR)|OUT_DIR$|NEXTEST|__NEXTEST)')
    unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
    export AWS_CONFIG_FILE="$state/aws-config" AWS_SHARED_CREDENTIALS_FILE="$state/aws-config" AWS_EC2_METADATA_DISABLED=true
    export RUST_LOG="${RUST_LOG:-info}" LOG_FORMAT=text
    while IFS='=' read -r name value; do
      export "$name=$value"
    done <"$state/stack.env"
    exec "$root/.venv/bin/cargo-lambda" lambda watch --ignore-changes \
      --invoke-address 127.0.0.1 --invoke-port "$lambda_port"
  ) >"$state/lambda.log" 2>&1 &
  echo $! >"$state/lambda.pid"
  wait_for_port "$lambda_port" "cargo lambda watch" "$state/lambda.log" "$(cat "$state/lambda.pid")"

  # bulk.asl.json's Distributed Map reads and writes S3 at AWS_ENDPOINT_URL (runner/distributed.mjs).
  local definitions=(--definition "forensics=$root/statemachine/forensics.asl.json")
  if [[ -f "$root/statemachine/bulk.asl.json" ]]; then
    definitions+=(--definition "bulk=$root/statemachine/bulk.asl.json")
  fi
  AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" \
    "$root/infra/local/runner/node_modules/.bin/node" "$root/infra/local/runner/serve.mjs" \
    --port "$sfn_port" --region "$region" "${definitions[@]}" \
    --lambda-endpoint "http://127.0.0.1:$lambda_port" >"$state/sfn.log" 2>&1 &
  echo $! >"$state/sfn.pid"
  wait_for_port "$sfn_port" "the local Step Functions API" "$state/sfn.log" "$(cat "$state/sfn.pid")"
}

down() {
  for name in sfn lambda moto; do
    if [[ -f "$state/$name.pid" ]]; then
      local pid
      pid=$(cat "$state/$name.pid")
      pkill -TERM -P "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
}

case "$action" in
  up) up ;;
  down) down ;;
  *) echo "stack.sh: unknown action $action (up or down)" >&2; exit 2 ;;
esac
