#!/usr/bin/env bash
# The local stack's credential_process (infra/local/stack.sh): each Lambda
# signs with an access key of its own, derived from its name
# (AWS_LAMBDA_FUNCTION_NAME, which `cargo lambda watch` sets for every
# function process), so that the emulator knows which function made each
# request (infra/local/moto_bench.py decodes it when it records requests).
set -euo pipefail

name=${AWS_LAMBDA_FUNCTION_NAME:?function-credentials.sh runs under a Lambda function}
key=$(printf '%s' "$name" | od -An -tx1 -v | tr -d ' \n' | tr 'a-f' 'A-F')
printf '{"Version": 1, "AccessKeyId": "LOCALFN%s", "SecretAccessKey": "testing"}\n' "$key"
