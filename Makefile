# Two commands matter: `make demo` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-quick browser clean integration integration-rehearsal integration-sweep

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[web,yaml,plot,pdf,ann,simd,fulltext,mcp,langchain,llama-index]' --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crossmodal demo

test: $(STAMP) browser
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/python benchmarks/run.py --quick --output-dir $(VENV)/bench-quick
	$(BIN)/pytest

# The opt-in live AWS suite (docs/live-aws.md): real Bedrock and S3 Vectors with
# CROSSMODAL_LIVE_AWS=1 and credentials; without them every test skips with one line on how to
# run it (-rfE: that line once, not once per skipped file). Sockets are opened: pyproject
# restricts them to localhost for `make test`.
LIVE_PYTEST := $(BIN)/pytest tests/integration -m integration --force-enable-socket -rfE
integration: $(STAMP)
	$(LIVE_PYTEST) $(PYTEST_ARGS)

# The same suite against the package's fakes and moto: wiring, lifecycle and cost accounting.
integration-rehearsal: $(STAMP)
	CROSSMODAL_LIVE_AWS=rehearsal CROSSMODAL_LIVE_REPORT=$(VENV)/rehearsal-report.json \
		$(LIVE_PYTEST) --live-budget-usd 1 -p no:cacheprovider $(PYTEST_ARGS)

# Removes buckets of earlier live runs that were killed before cleaning up (older than an hour).
integration-sweep: $(STAMP)
	$(BIN)/python -m tests.integration.sweep --older-than-minutes $${OLDER_THAN_MINUTES:-60}

# Installs Debian's chromium for the browser test where the machine allows it; the test skips
# itself with a reason elsewhere.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser test will be skipped"; \
	fi

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
