# agentao: two commands on a fresh machine.
#   make demo   the main job: one local subnet round on embedded defaults (base image, a task
#               forged from PyPI, the agent with the embedded model, evaluation, score, dataset)
#   make test   the test suite (builds the base image and the embedded model first if missing)
# Also: make bench (benchmarks as JSON), make check (fmt + clippy).
# Caches live outside the clone and are optional: delete them and everything is rebuilt.

CACHE ?= $(HOME)/.cache/agentao
# One target dir per checkout: cargo judges a workspace crate fresh by the mtimes of the files
# its last build read, by absolute path, so two clones sharing a target dir would each be
# served the other's binary.
CHECKOUT := $(shell printf %s "$(CURDIR)" | sha256sum | cut -c1-12)
export CARGO_TARGET_DIR ?= $(CACHE)/target/$(CHECKOUT)
export AGENTAO_CACHE_DIR ?= $(CACHE)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBUG_BIN := $(CARGO_TARGET_DIR)/debug/agentao
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/agentao

.PHONY: demo test deps check bench
DEMO := $(CACHE)/demo
BENCH := $(CACHE)/bench
demo: deps
	cargo build --release --locked
	$(RELEASE_BIN) image build-base
	$(RELEASE_BIN) llm install
	$(RELEASE_BIN) local --package idna==3.20
	@echo "dataset export: $${XDG_DATA_HOME:-$$HOME/.local/share}/agentao/dataset/export"

bench: deps
	cargo build --release --locked
	$(RELEASE_BIN) image build-base
	rm -rf $(BENCH) && mkdir -p $(BENCH)
	$(RELEASE_BIN) tasks add --source tests/fixtures/tinycalc --task tests/fixtures/tinycalc.task.json --out $(BENCH)/tasks.jsonl
	$(RELEASE_BIN) bench sandbox --iterations 10 --out $(BENCH)/sandbox.json
	$(RELEASE_BIN) tasks forge --package idna==3.20 --package attrs==26.1.0 --per-package 1 --store $(BENCH)/forged.db
	$(RELEASE_BIN) tasks export --store $(BENCH)/forged.db --out $(BENCH)/forged.jsonl
	$(RELEASE_BIN) bench eval --tasks $(BENCH)/forged.jsonl --iterations 5 --out $(BENCH)/eval.json
	$(RELEASE_BIN) bench scale --tasks $(BENCH)/tasks.jsonl --answers 50 --replicas 3 --out $(BENCH)/scale.json
	$(RELEASE_BIN) bench cluster --tasks $(BENCH)/tasks.jsonl --answers 50 --init-swarm --out $(BENCH)/cluster.json
	$(RELEASE_BIN) bench adversarial --tasks $(BENCH)/tasks.jsonl --out $(BENCH)/adversarial.json
	$(RELEASE_BIN) bench dataset --records 100000 --out $(BENCH)/dataset.json
	$(RELEASE_BIN) bench dashboard --records 10000 --out $(BENCH)/dashboard.json
	$(RELEASE_BIN) bench cerebro --rounds 3 --out $(BENCH)/cerebro.json
	$(RELEASE_BIN) bench axon --requests 2000 --concurrency 32 --out $(BENCH)/axon.json
	$(RELEASE_BIN) bench forge --package idna==3.20 --package jmespath==1.1.0 --candidates 8 --out $(BENCH)/forge.json
	$(RELEASE_BIN) bench materialize --package idna==3.20 --package jmespath==1.1.0 --out $(BENCH)/materialize.json
	$(RELEASE_BIN) llm install
	$(RELEASE_BIN) bench llm --requests 5 --max-tokens 128 --out $(BENCH)/llm.json
	@echo "benchmark results in $(BENCH)"

test: deps
	cargo build --locked --all-targets
	$(DEBUG_BIN) image build-base
	$(DEBUG_BIN) llm install
	cargo test --locked --all-targets

check:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

# Host tools the build and the image recipe need (Debian packages).
deps:
	@missing=""; \
	for t in debootstrap:debootstrap docker-registry:docker-registry cc:gcc c++:g++ pkg-config:pkg-config python3:python3 docker:docker.io chromium:chromium; do \
	  command -v $${t%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${t%%:*} ] || missing="$$missing $${t#*:}"; \
	done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "error: cargo is missing: install Rust (rustup) first"; exit 1; }
