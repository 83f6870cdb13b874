# plasticc-jax in a container. Two variants of one Dockerfile, chosen with a build argument:
#   docker build --tag plasticc-jax:cuda12 .                        NVIDIA GPU (the default)
#   docker build --build-arg VARIANT=cpu --tag plasticc-jax:cpu .   CPU only (no GPU, tests)
# then `docker run --gpus all plasticc-jax:cuda12 plasticc-jax train ...`; see docs/docker.md.
#
# Base image: plain Python, not nvidia/cuda. The jax[cuda12] wheels bring their own CUDA runtime,
# cuBLAS, cuDNN, cuFFT, NCCL and ptxas as pip packages; the only thing taken from the host is the
# driver (libcuda, nvidia-smi), which the NVIDIA Container Toolkit mounts into any image started
# with `--gpus all`. An nvidia/cuda base would add a second, unused CUDA of several GB.
# Python 3.13: the newest JAX needs Python >= 3.12 (Python 3.11 stops at JAX 0.10), and 3.13 is
# the Python of Debian 13 "trixie" that this image is based on. The tag follows 3.13's patch
# releases (security fixes); every Python package is pinned by docker/requirements-*.txt. For a
# frozen base, pass a digest: --build-arg PYTHON_IMAGE=python:3.13-slim-trixie@sha256:...
ARG PYTHON_IMAGE=python:3.13-slim-trixie

# ---- wheel: the project's own wheel, built apart from the dependencies -------------------------
# Only this stage sees the source, so an edit of plasticc_jax/ rebuilds this small stage and the
# last layer of the image, never the multi-GB dependency layer.
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plasticc_jax ./plasticc_jax
# A throw-away venv: the base's Python may be a distribution's, whose pip refuses system installs.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /tmp/build \
    && /tmp/build/bin/pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime: locked dependencies, then settings, then the project's wheel ---------------------
FROM ${PYTHON_IMAGE} AS runtime
# cuda: jax[cuda12] (about 3 GB of CUDA wheels); cpu: the same set without them.
ARG VARIANT=cuda

# 1. The dependencies, exactly as locked for this Python and platform (`make docker-lock` writes
#    the lock from pyproject.toml with `uv pip compile`). This layer depends on the lock file
#    alone: no source edit, setting or preset below rebuilds it. --no-deps: the lock is complete;
#    `pip check` below fails the build if it is not (pyproject changed, lock not refreshed).
COPY docker/requirements-${VARIANT}.txt /opt/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
    && PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install \
        --no-deps --only-binary=:all: --requirement /opt/requirements.txt

# 2. matplotlib's font cache, built once here into a fixed folder that any uid may write to
#    (sticky, like /tmp): otherwise each `docker run --rm` starts without it and rebuilds it.
ENV MPLCONFIGDIR=/opt/matplotlib
RUN mkdir -m 1777 /opt/matplotlib \
    && /opt/venv/bin/python -c "import matplotlib.font_manager"

# 3. Settings.
# HOME=/tmp and the cache folders: the container runs as the calling user (`--user $(id -u):$(id
# -g)`, so that the files written to the mounted data/ and runs/ belong to that user), a uid with
# no home in this image; numba (via umap) and others then write their caches under /tmp.
#
# XLA_PYTHON_CLIENT_PREALLOCATE=false: by default JAX takes 75% of GPU memory at start-up. This
# model and its batches need a few GB at most, so the reservation buys nothing and blocks other
# jobs (or a second stage) on the same GPU; growth on demand costs little here. For a large
# config on a dedicated GPU, pass `-e XLA_PYTHON_CLIENT_PREALLOCATE=true
# -e XLA_PYTHON_CLIENT_MEM_FRACTION=.90` (DOCKER_ARGS="..." with make).
#
# NVIDIA_DRIVER_CAPABILITIES: an image not derived from nvidia/cuda gets only `utility` from the
# toolkit by default; JAX needs `compute` (libcuda).
# PLASTICC_JAX_CONTAINER=1 and PLASTICC_JAX_IMAGE_VARIANT: `plasticc-jax doctor` then treats a
# CPU-only JAX as a failure in the cuda variant, and as expected in the cpu variant.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PLASTICC_JAX_CONTAINER=1 \
    PLASTICC_JAX_IMAGE_VARIANT=${VARIANT}
LABEL org.opencontainers.image.title="plasticc-jax" \
      org.opencontainers.image.description="PLAsTiCC anomaly detection: JAX/Flax VAE + Isolation Forest (${VARIANT})"

RUN groupadd --gid 1000 plasticc \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin plasticc

# The presets come with the package (a ./configs folder, where `make docker-*` mounts a
# project's own, is read first); data/ and runs/ are mount points (created here so that a bare
# `docker run` without mounts can still write, as the default user).
WORKDIR /project
RUN mkdir -p data runs && chown 1000:1000 data runs

# 4. The project itself, last: its wheel on top of the locked environment, without dependencies.
#    A source edit changes only these two layers (the wheel and its installed files: about
#    0.5 MB). COPY, not a RUN --mount from the wheel stage: buildah (podman build) leaves a
#    mount's content out of its layer cache key and would reuse the layer of an older wheel.
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-deps --no-index --no-cache-dir /tmp/wheels/plasticc_jax-*.whl \
    && rm -rf /tmp/wheels \
    && pip check

# The `plasticc` user by number, so that the runtime need not look the name up.
USER 1000:1000
CMD ["plasticc-jax", "doctor"]
