#!/usr/bin/env bash
# The local stack in the foreground, for `make invoke`: moto, a seeded estate,
# cargo lambda watch. Ctrl-C stops everything.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state="$root/.local/watch"
moto_port=${MOTO_PORT:-5050}
lambda_port=${LAMBDA_PORT:-9050}

"$root/infra/local/stack.sh" down "$state" 2>/dev/null || true
mkdir -p "$state"
trap '"$root/infra/local/stack.sh" down "$state"' EXIT
"$root/infra/local/stack.sh" up "$state" "$moto_port" "$lambda_port"
"$root/.venv/bin/python" "$root/infra/local/seed.py" "http://127.0.0.1:$moto_port" --name local >"$state/estate.json"
cat <<INFO
local stack up: moto at http://127.0.0.1:$moto_port, Lambda Invoke API at http://127.0.0.1:$lambda_port
seeded estate: $state/estate.json
invoke a function:  make invoke FN=triage EVENT=events/manual-request.json
  (the example events name i-0a1b2c3d4e5f60718; put the victim's id from the estate in a copy)
AWS CLI / SDK against the emulator: AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
lambda logs: $state/lambda.log        Ctrl-C to stop
INFO
tail -f "$state/lambda.log"
