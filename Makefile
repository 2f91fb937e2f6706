# The two commands a new user needs: `make demo` (the pipeline end to end) and `make test` (every test).
# Both create the virtualenv and bring up the local stack themselves (Debian packages, Maven jars).

VENV := .venv
NIBBLE := $(VENV)/bin/nibble

.PHONY: demo test test-unit setup stack-up stack-down lint browser alerts

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[dev,pandas]'
	touch $@

setup: $(VENV)/.installed

stack-up: setup
	$(NIBBLE) stack up

stack-down: setup
	$(NIBBLE) stack down

demo: stack-up
	$(NIBBLE) demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The browser the dashboard tests drive: Debian's chromium and chromedriver (never one a tool downloads).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver)

# The alert rules (monitoring/): promtool from Debian's prometheus package checks them and runs their unit tests.
alerts:
	@command -v promtool >/dev/null || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)
	promtool check rules monitoring/alerts.yml
	promtool test rules monitoring/alerts_test.yml

test: stack-up lint browser alerts
	CI=$${CI:-} $(VENV)/bin/pytest -p no:cacheprovider -ra

# Pure logic only: no service is started (the inner loop, seconds).
test-unit: setup
	$(VENV)/bin/pytest -p no:cacheprovider -q tests/unit
