# plasticc_jax: every stage is one `plasticc-jax` command; Make only sets up and chains them.
#   make prepare train evaluate      the main job on the default data (CPU preset)
#   make test                        lint + tests (sets up .venv on first use)
#   make prepare train evaluate CONFIG=gpu PROTOCOL=sn ARGS="--set train.seed=1"
#   make score LIGHTCURVES="a.csv.gz b.csv.gz" METADATA=m.csv.gz    score new files with the run
#   make docker-build && make docker-prepare docker-train docker-evaluate CONFIG=gpu   (NVIDIA GPU)

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

# Score light-curve files (grouped by object) with the trained and evaluated run of CONFIG and
# PROTOCOL (RUN=folder for another); by default the PLAsTiCC test set, if it is in data/raw.
RUN ?= runs/$(CONFIG)-$(PROTOCOL)
LIGHTCURVES ?= $(wildcard data/raw/plasticc_test_lightcurves_*.csv.gz)
METADATA ?= $(wildcard data/raw/plasticc_test_metadata.csv.gz)
OUTPUT ?= $(RUN)/scored.parquet
score: $(INSTALLED)
	$(if $(and $(LIGHTCURVES),$(METADATA)),,$(error make score: give the files to score, \
	  LIGHTCURVES="a.csv.gz ..." METADATA=m.csv.gz (none found in data/raw)))
	$(CLI) score --run $(RUN) --lightcurves $(LIGHTCURVES) --metadata $(METADATA) \
	  --output $(OUTPUT)

doctor: $(INSTALLED)
	$(CLI) doctor $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two pytest-xdist workers, a test file each at a time (tests/conftest.py: what they share).
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Speed and memory of every stage, side by side with the alternatives (not part of `make test`).
bench: $(INSTALLED)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_score.py
	$(BIN)/python benchmarks/bench_end_to_end.py
	$(BIN)/python benchmarks/report.py

# --- The same stages in the CUDA container (Dockerfile), on the host's NVIDIA GPU ---------------
# data/, runs/ (reports: runs/<run>/reports) and configs/ are mounted from here, and the container
# runs as the calling user, so what it writes belongs to that user. CONFIG, PROTOCOL and ARGS work
# as above; DOCKER_ARGS adds `docker run` options (e.g. DOCKER_ARGS="-e CUDA_VISIBLE_DEVICES=1"
# to use the second GPU only); MIRROR=/path mounts a local copy of the raw data read-only.
IMAGE ?= plasticc-jax:cuda12
DOCKER ?= docker
DOCKER_ARGS ?=
MIRROR ?= $(PLASTICC_JAX_MIRROR)
DOCKER_STAGES := docker-download docker-prepare docker-train docker-evaluate
.PHONY: docker-build docker-doctor $(DOCKER_STAGES)
DOCKER_RUN = $(DOCKER) run --rm --init --gpus all --user $(shell id -u):$(shell id -g) \
	--volume $(CURDIR)/data:/project/data --volume $(CURDIR)/runs:/project/runs \
	--volume $(CURDIR)/configs:/project/configs:ro \
	$(if $(MIRROR),--volume $(abspath $(MIRROR)):/mirror:ro --env PLASTICC_JAX_MIRROR=/mirror) \
	$(DOCKER_ARGS) $(IMAGE)

docker-build:
	$(DOCKER) build --tag $(IMAGE) .

# The folders exist before `docker run`, which would otherwise create them owned by root.
$(DOCKER_STAGES): docker-%:
	mkdir -p data runs
	$(DOCKER_RUN) plasticc-jax $* $(STAGE_ARGS)

docker-doctor:
	$(DOCKER_RUN) plasticc-jax doctor --expect-gpu $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
