# The two commands of the README:  make demo  and  make test.  Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

## Run the offline demo: serve seeds/demo on loopback, crawl it, print its stories.
demo: $(STAMP)
	$(BIN)/aggregator demo

## Start PostgreSQL, Redis and RabbitMQ if needed, then run the tests, ruff and mypy.
test: $(STAMP)
	bash scripts/services.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
