# The two commands a fresh machine needs: `make demo` and `make test` (see README.md).
# Everything else here is what those two build on.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit lab-test bootstrap system-deps toolchain lab-up lab-down bench

demo: bootstrap
	$(VENV)/bin/rollout demo

# The unit tests (about a minute of CPU) run while the lab starts and the first lab tests
# wait on their analysis intervals; their report follows the lab tests'. Both must pass.
test: bootstrap lint
	@unit_log=$$(mktemp); \
	$(VENV)/bin/pytest -m "not lab" --basetemp="$$unit_log.tmp" >"$$unit_log" 2>&1 & unit=$$!; \
	$(VENV)/bin/pytest -m lab --durations=20; lab=$$?; \
	wait $$unit; unit_rc=$$?; \
	echo "---- unit tests (run alongside the lab tests) ----"; cat "$$unit_log"; \
	rm -rf "$$unit_log" "$$unit_log.tmp"; \
	test $$lab -eq 0 -a $$unit_rc -eq 0

# Style, the layers (pyproject.toml [tool.importlinter]) and types (strict on core, analysis).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -m "not lab"

lab-test: bootstrap
	$(VENV)/bin/pytest -m lab

bootstrap: $(STAMP) system-deps toolchain

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# Prometheus for the lab; Chromium and its WebDriver for the dashboard's browser tests and the
# demo's screenshot. Only what is missing is installed (with sudo when not root).
system-deps:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -x /usr/bin/chromedriver || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  echo "installing$$missing from Debian's packages"; \
	  $$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -q --no-install-recommends $$missing; \
	fi

toolchain:
	toolchain/build

lab-up: bootstrap
	$(VENV)/bin/rollout lab up

lab-down: $(STAMP)
	$(VENV)/bin/rollout lab down

bench: $(STAMP)
	$(VENV)/bin/python -m bench.judges
