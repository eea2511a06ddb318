# ec2-forensics: the two commands are `make demo` and `make test`.
# Everything they need is installed here, into the repository (.venv, node_modules).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
RUNNER := infra/local/runner
FUNCTIONS := dispatch triage request-approval record-approval capture-metadata protect-instance isolate-network release-instance \
	snapshot-volumes check-snapshots share-snapshots copy-snapshots seal-evidence

.PHONY: all setup nextest build test demo bench lint watch invoke clean

all: build

$(VENV)/.installed: infra/local/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r infra/local/requirements.txt
	touch $@

$(RUNNER)/node_modules/.installed: $(RUNNER)/package.json $(RUNNER)/package-lock.json
	cd $(RUNNER) && npm ci --no-audit --no-fund --loglevel=error
	$(RUNNER)/node_modules/.bin/node --version
	touch $@

# The local-stack tests need cargo-nextest: it runs test binaries after cargo
# has released the build lock, which the `cargo run` behind every local Lambda needs.
nextest:
	command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

## setup: the Python venv (moto, cargo-lambda, zig), the npm runner (Node 22, aws-local-stepfunctions), nextest
setup: $(VENV)/.installed $(RUNNER)/node_modules/.installed nextest

## build: the workspace with its tests, and each Lambda exactly as `cargo lambda watch` builds it
build:
	cargo build --workspace --all-targets
	for f in $(FUNCTIONS); do cargo build --bin $$f; done

## test: every test (units, aws-smithy-mocks, moto, the state machine on the local stack)
test: setup build
	$(RUNNER)/node_modules/.bin/asl-validator --json-path statemachine/forensics.asl.json
	RUST_BACKTRACE=0 cargo nextest run --workspace --no-fail-fast

## demo: seed a victim estate, send a GuardDuty finding through the real state machine, print the Case
demo: setup build
	infra/local/demo.sh

## bench: containment calls, round trips and wall time with injected latency
bench: setup build
	cargo run --quiet -p system-tests --bin bench-containment

## lint: formatting, clippy, state machine, shell scripts
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(RUNNER)/node_modules/.bin/asl-validator --json-path statemachine/forensics.asl.json
	if command -v shellcheck >/dev/null; then shellcheck infra/local/*.sh .ci/run; else echo "shellcheck not installed: skipped"; fi

## watch: the local stack in the foreground (moto + seeded estate + cargo lambda watch) for `make invoke`
watch: setup build
	infra/local/watch.sh

## invoke: FN=<function> EVENT=<file>, against `make watch`
invoke:
	$(VENV)/bin/cargo-lambda lambda invoke $(FN) --invoke-address 127.0.0.1 --invoke-port $${LAMBDA_PORT:-9050} --data-file $(EVENT)

clean:
	rm -rf .local
