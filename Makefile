PYTHON ?= python3

.PHONY: test lint unit integration demo run bench

# The one command that passes the tests (README): lint, types, then every test.
test: lint
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check proxy stir_shaken tests bench
	$(PYTHON) -m mypy proxy stir_shaken
	bash docker/lint.sh

unit:
	$(PYTHON) -m pytest -q tests/unit tests/property

integration:
	$(PYTHON) -m pytest -q tests/integration

# On a fresh machine: installs the Python dependencies, then runs the example config.
run:
	$(PYTHON) -m pip install -q --disable-pip-version-check -e .
	$(PYTHON) -m proxy run --config configs/example.yaml

demo:
	$(PYTHON) -m proxy demo

bench:
	$(PYTHON) bench/run_all.py
