# ec2-forensics: the two commands are `make demo` and `make test`.
# Everything they need is installed here, into the repository (.venv*, node_modules).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
# The template checkers pin boto3 differently (aws-sam-cli, checkov): a venv each.
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
RUNNER := infra/local/runner
# The IAM proof (tests/iam, test-only: its simulator is AGPL) and the requests
# the end-to-end runs record for it.
IAM := tests/iam
IAM_RECORD := target/iam/requests.jsonl
FUNCTIONS := dispatch triage request-approval record-approval answer-approval capture-metadata acquire-memory check-command protect-instance \
	isolate-network release-instance snapshot-volumes check-snapshots share-snapshots copy-snapshots \
	launch-forensic-instance attach-evidence run-forensics seal-evidence update-findings bulk start-run check-ami sync-alarms readiness cleanup-case
TEMPLATES := $(wildcard infra/aws/*.yaml)
SCRIPTS := $(wildcard infra/local/*.sh infra/host/*.sh infra/aws/*.sh) .ci/run
# cargo lambda finds zig (PyPI ziglang) in the venv. The Lambdas are x86_64,
# as infra/aws/template.yaml declares.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: all setup nextest host-tools build checks lint test iam-proof iam-readme demo bench package deploy tools publish-tools watch invoke clean

all: build

$(VENV)/.installed: infra/local/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r infra/local/requirements.txt
	touch $@

$(SAM_VENV)/.installed: infra/aws/requirements-sam.txt
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r infra/aws/requirements-sam.txt
	touch $@

$(CHECKOV_VENV)/.installed: infra/aws/requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r infra/aws/requirements-checkov.txt
	touch $@

$(RUNNER)/node_modules/.installed: $(RUNNER)/package.json $(RUNNER)/package-lock.json
	cd $(RUNNER) && npm ci --no-audit --no-fund --loglevel=error
	$(RUNNER)/node_modules/.bin/node --version
	touch $@

$(IAM)/node_modules/.installed: $(IAM)/package.json $(IAM)/package-lock.json
	cd $(IAM) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The analysis scripts' tools (Debian): The Sleuth Kit, YARA, e2fsprogs, jq.
# Installed when missing (as root on CI; through sudo elsewhere).
host-tools:
	missing=""; for t in fls mactime icat mmls yara jq mkfs.ext4 mkfs.xfs blkid losetup sha256sum sfdisk; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [[ -n "$$missing" ]]; then \
	  echo "installing sleuthkit yara e2fsprogs xfsprogs util-linux fdisk jq (missing:$$missing)"; \
	  sudo=""; [[ $$(id -u) == 0 ]] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends sleuthkit yara e2fsprogs xfsprogs util-linux fdisk jq; \
	fi

# The local-stack tests need cargo-nextest: it runs test binaries after cargo
# has released the build lock, which the `cargo run` behind every local Lambda needs.
nextest:
	command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

## setup: the Python venvs (moto + cargo-lambda + zig; sam + cfn-lint + shellcheck; checkov), the npm runner (Node 22, aws-local-stepfunctions, asl-validator), the IAM proof's simulator, nextest, the analysis tools
setup: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(RUNNER)/node_modules/.installed $(IAM)/node_modules/.installed nextest host-tools

## build: the workspace with its tests, and each Lambda exactly as `cargo lambda watch` builds it
build:
	cargo build --workspace --all-targets
	for f in $(FUNCTIONS); do cargo build --bin $$f; done

## checks: templates, state machines and scripts checked like code
checks: setup
	$(SAM_VENV)/bin/cfn-lint $(TEMPLATES)
	$(SAM_VENV)/bin/sam validate --lint --template infra/aws/template.yaml --region us-east-1
	for f in statemachine/*.asl.json; do $(RUNNER)/node_modules/.bin/asl-validator --json-path "$$f"; done
	cd $(RUNNER) && node_modules/.bin/node --test 'test/*.test.mjs'
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -d infra/aws
	$(SAM_VENV)/bin/shellcheck $(SCRIPTS)
	cd infra/local && ../../$(VENV)/bin/python -m unittest test_s3_checks test_capture_memory

## lint: formatting and clippy, warnings as errors
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

## test: the checks, the lint, then every test (units, aws-smithy-mocks, moto, the local stack), recording every request the functions make; then the IAM proof on that recording
# The proof runs after nextest, not as one of its tests: nextest runs the
# end-to-end tests in parallel and in no set order, and the proof needs all
# of their requests.
test: setup checks build lint
	mkdir -p $(dir $(IAM_RECORD)) && : >$(IAM_RECORD)
	EC2_FORENSICS_BENCH_RECORD=$(CURDIR)/$(IAM_RECORD) RUST_BACKTRACE=0 cargo nextest run --workspace --no-fail-fast
	$(MAKE) --no-print-directory iam-proof

## iam-proof: every request recorded by the last `make test` allowed by the deployed policies, the denied table denied, the README's table of actions current
iam-proof: $(IAM)/node_modules/.installed
	$(RUNNER)/node_modules/.bin/node $(IAM)/prove.mjs --record $(IAM_RECORD) --readme README.md

## iam-readme: rewrite the README's table of each function's actions from the last recording
iam-readme: $(IAM)/node_modules/.installed
	$(RUNNER)/node_modules/.bin/node $(IAM)/prove.mjs --record $(IAM_RECORD) --readme README.md --write

## demo: a GuardDuty finding through dispatch, the approval gate and the whole state machine to the signed manifest and `verify`
demo: setup build
	infra/local/demo.sh

## package: release bootstrap zips of every function (cargo lambda), with their sizes
package: setup
	cargo lambda build --release --x86-64 --output-format zip $(foreach f,$(FUNCTIONS),-p $(f))
	for f in $(FUNCTIONS); do \
	  printf '%-18s %9d bytes  target/lambda/%s/bootstrap.zip\n' "$$f" "$$(stat -c %s "target/lambda/$$f/bootstrap.zip")" "$$f"; \
	done

## bench: containment calls and waves with injected latency; a thousand instances against EC2's request token buckets (bulk); each function's init time, peak RSS and zip size (release); memory capture MiB/s for 1 and 4 streams; a 2 GiB volume's analysis (wall time, bytes read / size)
bench: setup build package
	cargo run --quiet -p system-tests --bin bench-containment
	cargo run --quiet -p system-tests --bin bench-bulk
	cargo run --quiet -p system-tests --bin bench-footprint
	cd infra/local && ../../$(VENV)/bin/python memory_bench.py
	infra/local/analysis-bench.sh --compare d22ebb2

## deploy: sam build + sam deploy --guided into an AWS account (documented; not run by the tests)
deploy: setup
	cd infra/aws && ../../$(SAM_VENV)/bin/sam build --template template.yaml
	cd infra/aws && ../../$(SAM_VENV)/bin/sam deploy --guided --capabilities CAPABILITY_IAM

## tools: AVML 0.21 from crates.io, without its network features (it only writes a file), into build/tools/bin
AVML_VERSION := 0.21.0
tools:
	cargo install --locked avml --version $(AVML_VERSION) --no-default-features --root build/tools
	sha256sum build/tools/bin/avml

## publish-tools: BUCKET=<evidence bucket>: AVML to tools/avml, the host scripts and rules to tools/host/, each with its SHA-256 checksum (needs the AWS CLI and credentials); prints AvmlSha256 for `sam deploy`
publish-tools: tools
	@test -n "$(BUCKET)" || { echo "BUCKET=<the stack's EvidenceBucketName> is required" >&2; exit 2; }
	infra/aws/publish-tools.sh "$(BUCKET)" build/tools/bin/avml

## watch: the local stack in the foreground (moto + seeded estate + cargo lambda watch) for `make invoke`
watch: setup build
	infra/local/watch.sh

## invoke: FN=<function> EVENT=<file>, against `make watch`
invoke:
	$(VENV)/bin/cargo-lambda lambda invoke $(FN) --invoke-address 127.0.0.1 --invoke-port $${LAMBDA_PORT:-9050} --data-file $(EVENT)

clean:
	rm -rf .local
