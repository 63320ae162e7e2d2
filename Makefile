# agentao: two commands on a fresh machine.
#   make demo   the main job (at this stage: base image, a task environment, evaluation of patches,
#               the benchmarks; it grows into a local subnet round as the open issues land)
#   make test   the test suite (builds the base image first if it is missing)
# Caches live outside the clone and are optional: delete them and everything is rebuilt.

CACHE ?= $(HOME)/.cache/agentao
export CARGO_TARGET_DIR ?= $(CACHE)/target
export AGENTAO_CACHE_DIR ?= $(CACHE)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBUG_BIN := $(CARGO_TARGET_DIR)/debug/agentao
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/agentao

.PHONY: demo test deps check
DEMO := $(CACHE)/demo
demo: deps
	cargo build --release --locked
	$(RELEASE_BIN) image build-base
	$(RELEASE_BIN) doctor || true
	$(RELEASE_BIN) sandbox -- python3 -c "import sys, pytest; print('python', sys.version.split()[0], 'pytest', pytest.__version__, 'in a sandbox with no network')"
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(RELEASE_BIN) tasks add --source tests/fixtures/tinycalc --task tests/fixtures/tinycalc.task.json --out $(DEMO)/tasks.jsonl
	$(RELEASE_BIN) eval --tasks $(DEMO)/tasks.jsonl --predictions tests/fixtures/tinycalc.predictions.jsonl --run-dir $(DEMO)/run > $(DEMO)/report.json
	$(RELEASE_BIN) bench sandbox --iterations 10 --out $(DEMO)/bench-sandbox.json
	$(RELEASE_BIN) bench eval --tasks $(DEMO)/tasks.jsonl --iterations 5 --out $(DEMO)/bench-eval.json
	@echo "demo outputs in $(DEMO)"

test: deps
	cargo build --locked --all-targets
	$(DEBUG_BIN) image build-base
	cargo test --locked --all-targets

check:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

# Host tools the build and the image recipe need (Debian packages).
deps:
	@missing=""; \
	for t in debootstrap:debootstrap cc:gcc pkg-config:pkg-config python3:python3 docker:docker.io; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${t%%:*} ] || missing="$$missing $${t#*:}"; \
	done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "error: cargo is missing: install Rust (rustup) first"; exit 1; }
