# plasticc_jax: every stage is one `plasticc-jax` command; Make only sets up and chains them.
#   make prepare train evaluate      the main job on the default data (CPU preset)
#   make test                        lint + tests (sets up .venv on first use)
#   make prepare train evaluate CONFIG=gpu PROTOCOL=sn ARGS="--set train.seed=1"

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= default
PROTOCOL ?= rare
ARGS ?=

BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
CLI := $(BIN)/plasticc-jax
STAGE_ARGS = --config $(CONFIG) --protocol $(PROTOCOL) $(ARGS)

.PHONY: venv download prepare train evaluate score doctor test lint format bench clean

# The virtual environment is (re)built whenever pyproject.toml changes.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(INSTALLED)

download: $(INSTALLED)
	$(CLI) download $(STAGE_ARGS)

prepare: $(INSTALLED)
	$(CLI) prepare $(STAGE_ARGS)

train: $(INSTALLED)
	$(CLI) train $(STAGE_ARGS)

evaluate: $(INSTALLED)
	$(CLI) evaluate $(STAGE_ARGS)

doctor: $(INSTALLED)
	$(CLI) doctor $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
