# The two commands of the README: `make dev` runs the system locally, `make test` runs every
# test. Both install what they need into the project first (.venv/, tests/oidc/node_modules).

SHELL := /bin/bash
TOOLS := .venv/tools
CLIENTS := .venv/clients
API := .venv/api
POD := .venv/pod
OIDC := tests/oidc
CHROMIUM := /usr/bin/chromium
# Tools built from crates.io, once per machine, in a cache outside the clone keyed by version.
CACHE := $(or $(REXEC_CACHE),$(HOME)/.cache/rexec-lambda)
HAKARI_VERSION := 0.9.39
HAKARI := $(CACHE)/tools/cargo-hakari-$(HAKARI_VERSION)
export PATH := $(CURDIR)/$(TOOLS)/bin:$(HAKARI)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: dev token test deps lint build fuzz

deps: $(TOOLS)/.installed $(CLIENTS)/.installed $(API)/.installed $(POD)/.installed $(OIDC)/node_modules/.installed $(CHROMIUM) $(HAKARI)/bin/cargo-hakari

# Debian's Chromium, for the documentation pages' test (as root, or through sudo).
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive sh -c \
		'apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null'

# cargo-hakari keeps workspace-hack/ (see its Cargo.toml).
$(HAKARI)/bin/cargo-hakari:
	cargo install --quiet --locked --root $(HAKARI) cargo-hakari@$(HAKARI_VERSION)

$(TOOLS)/.installed: requirements/tools.txt
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(CLIENTS)/.installed: requirements/clients.txt
	python3 -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(API)/.installed: requirements/api.txt
	python3 -m venv $(API)
	$(API)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

# What stands for a server's image when the tests run its pod (Python with uv), and the wheels
# of the local package mirror the pod installs from (.venv/mirror).
$(POD)/.installed: requirements/pod.txt tests/python/package_mirror.py shared/src/server/server-requirements.txt $(CLIENTS)/.installed
	python3 -m venv $(POD)
	$(POD)/bin/pip install --quiet --disable-pip-version-check -r $<
	$(CLIENTS)/bin/python tests/python/package_mirror.py
	touch $@

$(OIDC)/node_modules/.installed: $(OIDC)/package.json $(OIDC)/package-lock.json
	npm ci --prefix $(OIDC) --no-audit --no-fund --loglevel=error
	touch $@

## Run the whole system locally on http://127.0.0.1:$${PORT:-9000} (see scripts/dev).
dev: $(TOOLS)/.installed $(CLIENTS)/.installed
	cargo build --quiet -p rexec-stand-ins -p rexec-tests --bins
	scripts/dev

## A token of the development identity service: make token USER=alice (alice, bob or eve).
token:
	@curl -fsS -H content-type:application/json -d '{"user":"$(if $(filter command line,$(origin USER)),$(USER),alice)"}' \
		http://127.0.0.1:$$(( $${PORT:-9000} + 1 ))/token | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'

## Every test: Rust unit and integration tests, the published clients, the template.
test: deps
	cargo test --workspace
	# rexec-shared as the Lambda functions build it (no local feature).
	cargo test --quiet -p rexec-shared --lib -- cluster aws
	cargo build -p rexec-stand-ins -p rexec-tests --bins
	$(CLIENTS)/bin/pytest tests/python
	$(MAKE) --no-print-directory lint

## The Lambda packages, as `sam build` makes them: make build ARCH=arm64 (default) or x86_64.
build: $(TOOLS)/.installed
	sam build --parameter-overrides Architecture=$(or $(ARCH),arm64)

lint: $(TOOLS)/.installed $(HAKARI)/bin/cargo-hakari
	cargo hakari generate --diff
	cargo hakari manage-deps --dry-run
	cargo hakari verify
	sam validate --lint --template template.yaml --region us-east-1
	cfn-lint template.yaml
	$(TOOLS)/bin/python tests/checks/check_routes.py
	$(TOOLS)/bin/python tests/checks/check_layers.py
	$(TOOLS)/bin/python tests/checks/check_settings.py
	$(TOOLS)/bin/python tests/checks/check_template_security.py
	$(TOOLS)/bin/python tests/checks/check_metrics.py
	$(TOOLS)/bin/python tests/checks/check_local_feature.py
	$(TOOLS)/bin/python tests/checks/check_security.py
	$(TOOLS)/bin/python tests/checks/check_docs_assets.py
	$(TOOLS)/bin/ruff check shared/src/server/pod

## Fuzz requirement lines, form decoding and token extraction: make fuzz FUZZ_SECONDS=600; an
## input that takes more than 1 second fails the run (-timeout=1), as a crash does
## (default 20 seconds per target). Findings are kept in a temporary directory; a crash leaves
## its input in fuzz/artifacts/.
FUZZ_TARGETS := requirement_lines form_decoding token_extraction
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz@0.13.2
	for target in $(FUZZ_TARGETS); do \
		found=$$(mktemp -d) && \
		RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --target-dir $(CURDIR)/target/fuzz $$target \
			$$found fuzz/corpus/$$target -- -max_total_time=$(or $(FUZZ_SECONDS),20) -timeout=1 -print_final_stats=1 \
			|| exit 1; \
		rm -rf $$found; \
	done
