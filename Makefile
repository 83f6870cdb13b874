# plasticc_jax: every stage is one `plasticc-jax` command; Make only sets up and chains them.
#   make prepare train evaluate      the main job on the default data (CPU preset)
#   make test                        lint + tests (sets up .venv, and Chromium as root, on first use)
#   make review                      review the run's candidates in a local web page
#   make prepare train evaluate CONFIG=gpu PROTOCOL=sn ARGS="--set train.seed=1"
#   make score LIGHTCURVES="a.csv.gz b.csv.gz" METADATA=m.csv.gz    score new files with the run
#   make docker-build && make docker-prepare docker-train docker-evaluate CONFIG=gpu   (NVIDIA GPU)
#   make docker-test                 build the CPU image and run the tiny pipeline in it

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= default
# Empty: the preset's own protocol (rare for every shipped preset); --protocol only when given, so
# that neither a preset's data.protocol nor ARGS="--set data.protocol=..." is overridden unasked.
PROTOCOL ?=
ARGS ?=

# The releases every figure in the docs was measured with (constraints.txt; `make lock` below
# renews them from pyproject.toml; CONSTRAINTS= installs the newest releases instead).
CONSTRAINTS ?= constraints.txt

BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cat pyproject.toml $(wildcard $(CONSTRAINTS)) | cksum | cut -d' ' -f1)
CLI := $(BIN)/plasticc-jax
STAGE_ARGS = --config $(CONFIG) $(if $(PROTOCOL),--protocol $(PROTOCOL)) $(ARGS)

.PHONY: venv lock download prepare train validate evaluate score score-inputs review doctor test test-slow test-all lint format bench \
	clean browser

# The virtual environment is (re)built whenever pyproject.toml or the constraints change.
$(INSTALLED): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e '.[dev]'
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

# Leave-one-known-class-out validation: how the detector was chosen (docs/evaluation.md).
validate: $(INSTALLED)
	$(CLI) validate $(STAGE_ARGS)

# Score light-curve files (grouped by object) with the trained and evaluated run of CONFIG and
# PROTOCOL (RUN=folder for another, as for a protocol or a class set given in ARGS, e.g.
# RUN=runs/default-custom-64-95-vs-<known classes> after ARGS="--set data.anomaly_classes=64,95",
# or set by a preset of your own: the folder's name comes from these two variables alone); by
# default the PLAsTiCC test set, if it is in data/raw.
RUN ?= runs/$(CONFIG)-$(or $(PROTOCOL),rare)
LIGHTCURVES ?= $(wildcard data/raw/plasticc_test_lightcurves_*.csv.gz)
METADATA ?= $(wildcard data/raw/plasticc_test_metadata.csv.gz)
OUTPUT ?= $(RUN)/scored.parquet
# The files are checked before the environment is built (minutes on a fresh clone).
score-inputs:
	$(if $(LIGHTCURVES),,$(error make score: no light-curve files: give LIGHTCURVES="a.csv.gz \
	  ..." (none in data/raw: plasticc_test_lightcurves_*.csv.gz)))
	$(if $(METADATA),,$(error make score: no metadata file: give METADATA=m.csv.gz (none in \
	  data/raw: plasticc_test_metadata.csv.gz)))
score: score-inputs $(INSTALLED)
	$(CLI) score --run $(RUN) --lightcurves $(LIGHTCURVES) --metadata $(METADATA) \
	  --output $(OUTPUT) $(ARGS)

# Review the run's candidates in a local web page; each answer re-ranks the rest (RUN=folder
# for another run; ARGS="--simulate" measures the active loop with a simulated expert).
review: $(INSTALLED)
	$(CLI) review --run $(RUN) $(ARGS)

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
# `make test`: every test but the slow ones (about 40 s); `make test-slow`: the tests
# that train their own models, start processes or a cluster, or read the real data (minutes).
# CI (.ci/run) runs both; `make test-all` runs both in one session.
PYTEST := $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder
test: lint browser
	$(PYTEST) -m "not slow"

test-slow: $(INSTALLED)
	$(PYTEST) -m slow

test-all: lint browser
	$(PYTEST)

# The review page's tests drive Chromium (tests/test_review_browser.py): Debian's package is
# installed when it is missing and this is root on a Debian-like system; elsewhere those tests
# are skipped with the reason (or set PLASTICC_JAX_CHROMIUM to a Chromium binary).
CHROMIUM := $(or $(PLASTICC_JAX_CHROMIUM),$(shell command -v chromium chromium-browser 2>/dev/null | head -n 1))
browser:
	@if [ -z "$(CHROMIUM)" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null || echo "could not install Chromium: the browser tests will be skipped"; \
	elif [ -z "$(CHROMIUM)" ]; then \
	  echo "no Chromium (and not root with apt-get): the browser tests will be skipped"; fi

# Speed and memory of every stage, side by side with the alternatives (not part of `make test`).
bench: $(INSTALLED)
	$(BIN)/python -m pip install -q $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS)) -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_replay.py
	$(BIN)/python benchmarks/bench_replay_memory.py
	$(BIN)/python benchmarks/bench_replay_jobs.py
	$(BIN)/python benchmarks/bench_score.py
	$(if $(wildcard runs/default-rare/metrics.json),$(BIN)/python benchmarks/bench_score.py --run runs/default-rare)
	$(BIN)/python benchmarks/bench_distributed.py
	$(BIN)/python benchmarks/bench_end_to_end.py
	$(BIN)/python benchmarks/report.py

# --- The same stages in the container (Dockerfile, docs/docker.md) -----------------------------
# Each target is one `docker run` (docs/docker.md writes them out): data/, runs/ (reports:
# runs/<run>/reports) and, where there is one, the project's own configs/ (presets read before
# the image's) are mounted from here, and the container runs as the calling user, so what it
# writes belongs to that user. CONFIG, PROTOCOL and ARGS work as above, and:
#   VARIANT=cuda         the image with JAX's CUDA 12 wheels, on the host's NVIDIA GPU (default)
#   VARIANT=cpu          the CPU-only image: no GPU needed (tests, machines without one)
#   DOCKER=podman        another engine; GPU_FLAGS says how the GPU is passed (GPU_FLAGS= none)
#   DOCKER_USER=uid:gid  the user in the container (default: yours)
#   DOCKER_ARGS=...      more `docker run` options, e.g. "-e CUDA_VISIBLE_DEVICES=1" (the second
#                        GPU only) or --userns=keep-id (rootless Podman)
#   MIRROR=/path         mounts a local copy of the raw data read-only
VARIANT ?= cuda
IMAGE ?= plasticc-jax:$(if $(filter cpu,$(VARIANT)),cpu,cuda12)
DOCKER ?= docker
DOCKER_USER ?= $(shell id -u):$(shell id -g)
DOCKER_ARGS ?=
MIRROR ?= $(PLASTICC_JAX_MIRROR)
# How the container gets the GPU: Docker's --gpus (NVIDIA Container Toolkit); Podman names it as
# a CDI device (`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` once). GPU_FLAGS= none.
GPU_FLAGS ?= $(if $(filter cpu,$(VARIANT)),,$(if $(findstring podman,$(DOCKER)),--device nvidia.com/gpu=all,--gpus all))
DOCKER_STAGES := docker-download docker-prepare docker-train docker-evaluate
.PHONY: docker-build docker-doctor docker-lock docker-test $(DOCKER_STAGES)
# A VARIANT other than the two images' is refused when a docker target runs (not before: a
# VARIANT in the environment for something else leaves the other targets alone).
CHECK_VARIANT = $(if $(filter cpu cuda,$(VARIANT)),,$(error VARIANT=$(VARIANT): give \
	VARIANT=cuda (the default: the image for NVIDIA GPUs) or VARIANT=cpu))
DOCKER_RUN = $(CHECK_VARIANT)$(DOCKER) run --rm --init $(GPU_FLAGS) --user $(DOCKER_USER) \
	--volume $(CURDIR)/data:/project/data --volume $(CURDIR)/runs:/project/runs \
	$(if $(wildcard configs/.),--volume $(CURDIR)/configs:/project/configs:ro) \
	$(if $(MIRROR),--volume $(abspath $(MIRROR)):/mirror:ro --env PLASTICC_JAX_MIRROR=/mirror) \
	$(DOCKER_ARGS) $(IMAGE)

docker-build:
	$(CHECK_VARIANT)$(DOCKER) build --build-arg VARIANT=$(VARIANT) --tag $(IMAGE) .

# Every run target creates the mount points first: `docker run` would otherwise create them
# owned by root, and the next stage could not write to them.
$(DOCKER_STAGES): docker-%:
	mkdir -p data runs
	$(DOCKER_RUN) plasticc-jax $* $(STAGE_ARGS)

docker-doctor:
	mkdir -p data runs
	$(DOCKER_RUN) plasticc-jax doctor $(if $(GPU_FLAGS),--expect-gpu) $(ARGS)

# constraints.txt: every package of the venv pinned, one resolution for every Python from 3.11
# and every platform (`uv pip compile --universal`). After a change to the dependencies in
# pyproject.toml: `make lock` (keeps every pin that still fits); `make lock UPGRADE=1` moves to the
# newest releases (then `make test test-slow`, and the docs' figures measured again).
# Only uv is needed (a venv of the old pins might not install beside a raised lower bound).
UV_VENV = test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install -q 'uv>=0.5'
lock:
	$(UV_VENV)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --quiet \
	  --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --output-file constraints.txt

# The image's dependency locks (docker/requirements-{cpu,cuda}.txt), resolved from pyproject.toml
# for the image's Python (3.13) on Linux x86-64 with `uv pip compile`. After a change to the
# dependencies in pyproject.toml: `make docker-lock` (keeps every pin that still fits); to move
# the image to the newest releases: `make docker-lock UPGRADE=1`. Then `make docker-test`.
LOCK_PYTHON := 3.13
LOCK = $(BIN)/uv pip compile pyproject.toml --quiet --python-version $(LOCK_PYTHON) \
	--python-platform x86_64-manylinux_2_28 --only-binary :all: \
	--custom-compile-command "make docker-lock" $(if $(UPGRADE),--upgrade)
docker-lock:
	$(UV_VENV)
	$(LOCK) --output-file docker/requirements-cpu.txt
	$(LOCK) --extra cuda --output-file docker/requirements-cuda.txt

# Build the CPU image for real and run doctor and the tiny pipeline in it as a non-root user
# (minutes; not part of `make test`). DOCKER=... picks the engine; see scripts/docker_test.sh.
docker-test:
	DOCKER=$(if $(filter command line environment,$(origin DOCKER)),$(DOCKER)) \
		bash scripts/docker_test.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
