# minibroker: `make serve` runs the broker, `make test` runs every check.
# Both create or refresh a local .venv first, so a fresh clone needs only
# Python 3.11+ and make.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 7878

.PHONY: serve test lint typecheck imports pytest bench bench-quick clean venv node-deps node-test

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/minibroker serve --port $(PORT)

# Every part runs even when an earlier one fails, and the last line sums
# them all up (each part's own output, the pytest and node summaries
# included, scrolls by above it); the status is non-zero if any part failed.
TEST_PARTS := lint typecheck imports pytest node-test

test: $(STAMP) node-deps
	@failed=0; summary=""; \
	for part in $(TEST_PARTS); do \
		start=$$(date +%s); \
		if $(MAKE) --no-print-directory $$part; then result=ok; else result=FAILED; failed=1; fi; \
		summary="$$summary $$part $$result ($$(( $$(date +%s) - start )) s),"; \
	done; \
	echo "make test:$${summary%,}"; \
	exit $$failed

lint: $(STAMP)
	$(BIN)/ruff check minibroker tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -q

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis build *.egg-info $(NODE_CLIENT)/node_modules

# The Node.js client (clients/node) and the cross-language tests need
# Node >= 20 and npm; without them both are skipped, saying so. npm ci
# installs exactly the lock file, and only when the lock file changed.
NODE_CLIENT := clients/node
NODE_STAMP := $(NODE_CLIENT)/node_modules/.installed
HAVE_NODE = command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
	&& node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'

node-deps:
	@if ! { $(HAVE_NODE); }; then \
		echo "node >= 20 and npm not found: skipping the Node.js client's dependencies (clients/node)"; \
	elif [ ! -f $(NODE_STAMP) ] || [ $(NODE_CLIENT)/package-lock.json -nt $(NODE_STAMP) ]; then \
		(cd $(NODE_CLIENT) && npm ci --no-audit --no-fund) && touch $(NODE_STAMP); \
	fi

node-test: $(STAMP) node-deps
	@if ! { $(HAVE_NODE); }; then \
		echo "node >= 20 and npm not found: skipping the Node.js client's tests (clients/node)"; \
	else \
		cd $(NODE_CLIENT) && MINIBROKER_PYTHON=$(CURDIR)/$(BIN)/python \
			node --test --test-reporter=spec test/*.test.js; \
	fi
