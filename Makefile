# The newcomer's two commands: `make demo` and `make test`. Both set everything up.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test check lint unit broker services test-tools docs install clean cluster

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

broker:
	@scripts/ensure-broker

cluster:  ## three RabbitMQ nodes beside the system broker (scripts/cluster down stops them)
	@scripts/cluster up

services:
	@scripts/ensure-services

test-tools:
	@scripts/ensure-test-tools

demo: $(VENV)/.installed broker  ## ship the bundled samples, tail them, consume them into SQLite
	@scripts/demo

test: $(VENV)/.installed broker services test-tools  ## every test, against the real local RabbitMQ
	$(PY) -m pytest

unit: $(VENV)/.installed  ## the fast tests that need no broker
	$(PY) -m pytest tests/unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check logctl tests
	$(VENV)/bin/ruff format --check logctl tests
	$(VENV)/bin/mypy

docs: $(VENV)/.installed  ## man/ and completions/, generated from the commands (a test fails when they are stale)
	$(PY) -m logctl.cli.docs man completions

PREFIX ?= /usr/local
install: $(VENV)/.installed  ## man pages and completions under PREFIX (logctl itself: pip install .)
	install -d $(PREFIX)/share/man/man1 $(PREFIX)/share/bash-completion/completions \
	  $(PREFIX)/share/zsh/site-functions $(PREFIX)/share/fish/vendor_completions.d
	install -m 644 man/*.1 $(PREFIX)/share/man/man1/
	install -m 644 completions/logctl.bash $(PREFIX)/share/bash-completion/completions/logctl
	install -m 644 completions/_logctl $(PREFIX)/share/zsh/site-functions/_logctl
	install -m 644 completions/logctl.fish $(PREFIX)/share/fish/vendor_completions.d/logctl.fish

check: lint test

clean:
	rm -rf $(VENV) demo-state *.egg-info .pytest_cache .mypy_cache .ruff_cache
