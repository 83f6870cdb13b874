# plasticc-jax on an NVIDIA GPU: `make docker-build`, then `make docker-doctor` and
# `make docker-prepare docker-train docker-evaluate` (or `docker run --gpus all <image> plasticc-jax
# train ...`); see the README's "Docker (NVIDIA GPU)" section.
#
# Base image: plain Python, not nvidia/cuda. The jax[cuda12] wheels that `.[cuda]` installs bring
# their own CUDA runtime, cuBLAS, cuDNN, cuFFT, NCCL and ptxas as pip packages; the only thing
# taken from the host is the driver (libcuda, nvidia-smi), which the NVIDIA Container Toolkit
# mounts into any image when it runs with `--gpus all`. An nvidia/cuda base would add a second,
# unused CUDA of several GB. Pinned to an exact tag (Python 3.11, as in development and CI).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment holding the project and its dependencies --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone (an empty package and README stand in for the
# real ones): this multi-GB layer (jax[cuda12], scikit-learn, ...) is rebuilt only when
# pyproject.toml changes, not on every edit of the source. It installs the project itself with its
# `cuda` extra (`./[cuda]` is `.` plus the extra), so the image gets exactly the dependency set
# that pyproject.toml declares: there is no second list to keep in step.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir plasticc_jax \
    && touch plasticc_jax/__init__.py README.md \
    && pip install './[cuda]'

# Then the real package replaces the empty one (same name and version: no dependency changes).
COPY README.md ./
COPY plasticc_jax ./plasticc_jax
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && pip check

# ---- runtime: the environment, the presets, a non-root user -------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="plasticc-jax" \
      org.opencontainers.image.description="PLAsTiCC anomaly detection: JAX/Flax VAE + Isolation Forest, CUDA 12"

# HOME=/tmp and the cache folders: the Make targets run the container as the calling user
# (`--user $(id -u):$(id -g)`, so the files written to the mounted data/ and runs/ belong to that
# user), a uid with no home in this image; matplotlib and numba (via umap) then write their
# caches under /tmp instead of failing on an unwritable home.
#
# XLA_PYTHON_CLIENT_PREALLOCATE=false: by default JAX takes 75% of GPU memory at start-up. This
# model and its batches need a few GB at most, so the reservation buys nothing and blocks other
# jobs (or a second stage) on the same GPU; growth on demand costs little here. For a large
# config on a dedicated GPU, pass `-e XLA_PYTHON_CLIENT_PREALLOCATE=true
# -e XLA_PYTHON_CLIENT_MEM_FRACTION=.90` (DOCKER_ARGS="..." with make).
#
# NVIDIA_DRIVER_CAPABILITIES: an image not derived from nvidia/cuda gets only `utility` from the
# toolkit by default; JAX needs `compute` (libcuda).
# PLASTICC_JAX_CONTAINER=1: `plasticc-jax doctor` then treats a CPU-only JAX as a failure.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PLASTICC_JAX_CONTAINER=1

RUN groupadd --gid 1000 plasticc \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin plasticc
COPY --from=build /opt/venv /opt/venv

# The command line resolves `--config NAME` from ./configs; data/ and runs/ are mount points
# (created here so that a bare `docker run` without mounts can still write, as the default user).
WORKDIR /project
COPY configs ./configs
RUN mkdir -p data runs && chown 1000:1000 data runs

# The `plasticc` user by number, so that the runtime need not look the name up.
USER 1000:1000
CMD ["plasticc-jax", "doctor"]
