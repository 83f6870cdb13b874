#!/usr/bin/env bash
# make docker-test: build the CPU variant of the image for real and run the pipeline in it.
#
#   1. Engine: $DOCKER if set; else docker (if its daemon answers); else podman. On Debian or
#      Ubuntu, as root, podman is installed with apt when neither is there, and configured (a
#      drop-in under /etc/containers/containers.conf.d/) when containers cannot start otherwise.
#   2. Base image (the Dockerfile's PYTHON_IMAGE): used if present, else pulled; where it cannot
#      be pulled (no access to Docker Hub), a stand-in is made with debootstrap: a minimal Debian
#      of the tag's release (python:3.13-slim-trixie -> Debian 13 "trixie", whose Python is 3.13)
#      with the host's extra CA certificates, imported under the base image's tag.
#   3. Builds the cpu variant (timed) and reports its size.
#   4. In a scratch folder, as a non-root user (the caller; uid 4242 when the caller is root),
#      with data/ and runs/ mounted: doctor, then the tiny pipeline (prepare, train, evaluate,
#      score) on the PLAsTiCC training set when PLASTICC_JAX_MIRROR names a local copy, else on
#      synthetic data. Checks exit status, outputs, ownership of every file written, and that no
#      command printed a traceback or rebuilt matplotlib's font cache.
#   5. Rebuilds after a one-line edit of the package (in a copy of the build context) and checks
#      that only the project's last two layers change (the wheel and its installation), by less
#      than 10 MB in all; reports the time.
#
#   6. Only with DOCKER_TEST_CUDA=1: builds the cuda variant too (about 7 GB) and checks that,
#      without a GPU, its doctor fails with a one-line reason and train runs on the CPU, both
#      without a traceback.
#
#   7. Only with DOCKER_TEST_SUITE=1: runs the fast tests in the cpu image, on its Python and
#      locked packages (newer than a Python 3.11 environment gets), pytest installed from PyPI
#      in a throw-away container.
#
# Environment: DOCKER (engine), IMAGE (tag; default plasticc-jax:cpu), DOCKER_TEST_DATA
# (mirror|synthetic), DOCKER_TEST_CUDA=1, DOCKER_TEST_SUITE=1, KEEP=1 (keep the scratch
# folder). Needs root only to install or configure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-plasticc-jax:cpu}
MAX_EDIT_LAYER_BYTES=$((10 * 1000 * 1000))
STANDIN_LABEL=org.plasticc-jax.standin
SECONDS=0

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'docker-test: error: %s\n' "$*" >&2
    exit 1
}
elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
declare -a SUMMARY=()
note() {
    SUMMARY+=("$*")
    printf '%s\n' "$*"
}

# ---- 1. the engine --------------------------------------------------------------------------
install_podman() {
    command -v apt-get >/dev/null || die "no container engine; install Docker or Podman"
    [[ $(id -u) == 0 ]] || die "no container engine; install Podman (apt-get install podman) as root"
    say "installing podman and buildah (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc catatonit uidmap \
        >/dev/null
}

pick_engine() {
    if [[ -n ${DOCKER:-} ]]; then
        command -v "$DOCKER" >/dev/null || die "DOCKER=$DOCKER is not installed"
        ENGINE=$DOCKER
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        command -v podman >/dev/null || install_podman
        ENGINE=podman
    fi
    if [[ $ENGINE == docker ]]; then
        export DOCKER_BUILDKIT=1 # RUN --mount (cache, bind from a stage) needs BuildKit
    fi
    note "engine: $ENGINE ($("$ENGINE" --version | head -n1))"
}

# Podman inside a VM or a container often cannot apply its default limits (nofile and nproc of
# about a million: "error setting rlimit ... operation not permitted"), has no systemd for
# cgroups and no crun. These settings are what it needs there; written only when a container
# does not start without them.
PODMAN_DROPIN=/etc/containers/containers.conf.d/50-plasticc-jax-docker-test.conf
configure_podman() {
    local image=$1 nofile nproc
    [[ $ENGINE == podman ]] || return 0
    if "$ENGINE" run --rm "$image" true 2>/dev/null; then
        return 0
    fi
    [[ $(id -u) == 0 && ! -e $PODMAN_DROPIN ]] ||
        die "podman cannot start a container: $("$ENGINE" run --rm "$image" true 2>&1 | tail -n1)"
    # Limits no higher than this shell's own hard limits (podman may not raise them).
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [[ $nofile == unlimited || $nofile -gt 16384 ]] && nofile=16384
    [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
    say "configuring podman: $PODMAN_DROPIN"
    mkdir -p "$(dirname "$PODMAN_DROPIN")"
    cat >"$PODMAN_DROPIN" <<EOF
# Written by plasticc-jax's scripts/docker_test.sh: podman's defaults fail on this machine.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat "$PODMAN_DROPIN"
    "$ENGINE" run --rm "$image" true ||
        die "podman still cannot start a container; see the error above"
}

# ---- 2. the base image ----------------------------------------------------------------------
debian_mirror() {
    # The mirror apt uses here (deb822 or one-line sources), else Debian's own.
    local found
    found=$(grep -hoE '^URIs:[[:space:]]*\S+/debian/?$' /etc/apt/sources.list.d/*.sources \
        2>/dev/null | head -n1 | awk '{print $2}') || true
    if [[ -z $found ]]; then
        found=$(grep -hoE '^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?\S+/debian/?[[:space:]]' \
            /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $NF}') || true
    fi
    printf '%s\n' "${found:-http://deb.debian.org/debian}"
}

make_standin() {
    local base=$1 suite rootfs mirror
    suite=${base##*-}      # python:3.13-slim-trixie -> trixie
    suite=${suite%%@*}     # a digest after the tag
    [[ $suite =~ ^[a-z]+$ ]] || die "cannot tell the Debian release of $base"
    [[ $(id -u) == 0 ]] || die "$base cannot be pulled; making a stand-in (debootstrap) needs root"
    command -v debootstrap >/dev/null || {
        command -v apt-get >/dev/null || die "$base cannot be pulled and debootstrap is missing"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap \
            >/dev/null
    }
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /var/tmp/plasticc-standin.XXXXXX)
    say "stand-in for $base: Debian $suite from $mirror (debootstrap)"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
        die "debootstrap failed; see $rootfs.log"
    # Trust what the host trusts (a proxy's CA, if any), so that pip in the build reaches PyPI.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . | "$ENGINE" import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL $STANDIN_LABEL=debootstrap-$suite" - "$base" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
    if [[ $ENGINE == podman && $base != */* ]]; then
        # podman import stores localhost/NAME; FROM NAME looks for docker.io/library/NAME.
        "$ENGINE" tag "localhost/$base" "docker.io/library/$base"
    fi
}

ensure_base() {
    local base=$1 start=$SECONDS
    if "$ENGINE" image inspect "$base" >/dev/null 2>&1; then
        :
    elif timeout 600 "$ENGINE" pull "$base" >/dev/null 2>&1; then
        note "base image: $base (pulled, $(elapsed $((SECONDS - start))))"
        return
    else
        make_standin "$base"
        note "base image: $base is a STAND-IN made with debootstrap ($(elapsed $((SECONDS - start))))"
        return
    fi
    if "$ENGINE" image inspect --format "{{ index .Config.Labels \"$STANDIN_LABEL\" }}" "$base" \
        2>/dev/null | grep -q debootstrap; then
        note "base image: $base (a stand-in made with debootstrap, already present)"
    else
        note "base image: $base (already present)"
    fi
}

# ---- 3. build -------------------------------------------------------------------------------
build() { # build CONTEXT TAG: the cpu variant, output to a log
    "$ENGINE" build --build-arg VARIANT=cpu --tag "$2" "$1" >"$WORK/build-$3.log" 2>&1 ||
        {
            tail -n 30 "$WORK/build-$3.log" >&2
            die "the build failed; see above"
        }
}

layers() { "$ENGINE" image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' "$1" | grep .; }

# ---- 4. run ---------------------------------------------------------------------------------
run_in_image() { # run_in_image NAME COMMAND...: one container, output kept in $WORK/NAME.log
    local name=$1 start=$SECONDS
    shift
    if ! "$ENGINE" run --rm --init "${RUN_ARGS[@]}" "$IMAGE" "$@" >"$WORK/$name.log" 2>&1; then
        cat "$WORK/$name.log" >&2
        die "'$*' failed in the container"
    fi
    if grep -nE 'Traceback|building the font cache' "$WORK/$name.log" >&2; then
        die "'$*' printed the lines above (a traceback or a font-cache rebuild)"
    fi
    note "  $name: ok ($(elapsed $((SECONDS - start))))"
}

expect_file() { [[ -s $WORK/$1 ]] || die "missing output: $1"; }

# ---- 6. optional (DOCKER_TEST_CUDA=1): the cuda variant on this machine, without a GPU -------
# About 7 GB and 8 minutes to build cold. Its doctor must fail (a GPU is expected) and explain in
# one line, and a stage must run on the CPU, both without JAX's traceback for the CUDA plugin.
cuda_without_gpu() {
    local uid=$1 gid=$2 start=$SECONDS size
    say "building plasticc-jax:cuda12 (VARIANT=cuda) and running it without a GPU"
    "$ENGINE" build --build-arg VARIANT=cuda --tag plasticc-jax:cuda12 . >"$WORK/build-cuda.log" 2>&1 ||
        die "the cuda build failed; see $WORK/build-cuda.log"
    size=$("$ENGINE" image inspect --format '{{.Size}}' plasticc-jax:cuda12)
    note "build (cuda): $(elapsed $((SECONDS - start))); image plasticc-jax:cuda12: $((size / 1000000)) MB"
    local saved=$IMAGE
    IMAGE=plasticc-jax:cuda12
    if "$ENGINE" run --rm "${RUN_ARGS[@]}" "$IMAGE" plasticc-jax doctor >"$WORK/cuda-doctor.log" 2>&1; then
        die "doctor in the cuda image passed without a GPU"
    fi
    grep -q '^JAX runs on the CPU: ' "$WORK/cuda-doctor.log" || die "cuda doctor gave no reason"
    ! grep -n Traceback "$WORK/cuda-doctor.log" >&2 || die "the cuda doctor printed a traceback"
    note "  cuda doctor without a GPU: exit 1, $(grep '^JAX runs on the CPU' "$WORK/cuda-doctor.log")"
    run_in_image cuda-train plasticc-jax train --config tiny --run-dir runs/tiny-cuda
    grep -q 'WARNING plasticc_jax.doctor: JAX runs on the CPU' "$WORK/cuda-train.log" ||
        die "train in the cuda image did not say that it runs on the CPU"
    IMAGE=$saved
}

# ---- 7. optional (DOCKER_TEST_SUITE=1): the fast tests on the image's Python and packages ---
# The image's locked packages are newer than a Python 3.11 environment gets (JAX stops at 0.10
# there): the fast tier of the tests, run on a copy of the tracked tree in a throw-away container
# of the image with pytest installed from PyPI (not into the image), checks the code against
# them. About a minute with the packages cached.
suite_in_image() {
    local start=$SECONDS tree="$WORK/suite"
    say "the fast tests in $IMAGE (pytest from PyPI, in a throw-away container)"
    mkdir -p "$tree"
    git -C "$REPO" archive HEAD | tar -x -C "$tree"
    if ! "$ENGINE" run --rm --init --user 0 --volume "$tree:/repo" --workdir /repo --env CI=true \
        "$IMAGE" bash -c "/opt/venv/bin/pip install -q pytest pytest-xdist pytest-timeout \
            setuptools && /opt/venv/bin/python -m pytest -q -n 2 --dist loadfile \
            -p no:cacheprovider -m 'not slow' tests" >"$WORK/suite.log" 2>&1; then
        tail -n 40 "$WORK/suite.log" >&2
        die "the fast tests failed in the image (the log's end above)"
    fi
    note "fast tests in the image: $(tail -n 1 "$WORK/suite.log") ($(elapsed $((SECONDS - start))))"
}

main() {
    cd "$REPO"
    WORK=$(mktemp -d /var/tmp/plasticc-docker-test.XXXXXX)
    [[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$WORK"' EXIT
    pick_engine

    local base
    base=$(sed -nE 's/^ARG PYTHON_IMAGE=(\S+)$/\1/p' Dockerfile)
    [[ -n $base ]] || die "no 'ARG PYTHON_IMAGE=' in the Dockerfile"
    ensure_base "$base"
    configure_podman "$base"

    say "building $IMAGE (VARIANT=cpu)"
    local start=$SECONDS size
    build . "$IMAGE" first
    size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
    note "build: $(elapsed $((SECONDS - start))); image $IMAGE: $((size / 1000000)) MB"

    # A non-root user: the caller, or uid/gid 4242 (not the image's 1000) when root calls.
    local uid gid
    if [[ $(id -u) == 0 ]]; then uid=4242 gid=4242; else uid=$(id -u) gid=$(id -g); fi
    install -d -o "$uid" -g "$gid" "$WORK/data" "$WORK/runs"
    RUN_ARGS=(--user "$uid:$gid" --volume "$WORK/data:/project/data"
        --volume "$WORK/runs:/project/runs")
    if [[ $ENGINE == podman && $(id -u) != 0 ]]; then
        RUN_ARGS+=(--userns=keep-id) # rootless: the caller's uid inside is the caller's outside
    fi

    local data=${DOCKER_TEST_DATA:-}
    if [[ -z $data ]]; then
        if [[ -n ${PLASTICC_JAX_MIRROR:-} && -d ${PLASTICC_JAX_MIRROR:-} ]]; then
            data=mirror
        else
            data=synthetic
        fi
    fi
    local raw lightcurves metadata
    if [[ $data == mirror ]]; then
        [[ -d ${PLASTICC_JAX_MIRROR:-} ]] || die "DOCKER_TEST_DATA=mirror needs PLASTICC_JAX_MIRROR"
        RUN_ARGS+=(--volume "$(cd "$PLASTICC_JAX_MIRROR" && pwd):/mirror:ro"
            --env PLASTICC_JAX_MIRROR=/mirror)
        raw=/mirror
    else
        raw=/project/data/raw
    fi
    lightcurves=$raw/plasticc_train_lightcurves.csv.gz
    metadata=$raw/plasticc_train_metadata.csv.gz

    say "running in $IMAGE as uid $uid:$gid, data: $data ($WORK)"
    run_in_image doctor plasticc-jax doctor
    grep -q 'OK: JAX computes correctly on the CPU' "$WORK/doctor.log" ||
        die "doctor did not report a working CPU"
    # The presets come with the package in the image.
    "$ENGINE" run --rm "$IMAGE" python -c "from plasticc_jax.config_io import preset_path
print(preset_path('tiny'))" >"$WORK/presets.log" 2>&1 || true
    grep -q 'site-packages/plasticc_jax/configs/tiny.py$' "$WORK/presets.log" ||
        die "the image's presets: $(cat "$WORK/presets.log")"
    note "  presets: in the image's package"
    if [[ $data == synthetic ]]; then
        run_in_image synthetic python -c "from pathlib import Path
from plasticc_jax.synthetic import write_synthetic
write_synthetic(Path('data/raw'), 500, seed=0)"
    fi
    local stage
    for stage in prepare train evaluate; do
        run_in_image "$stage" plasticc-jax "$stage" --config tiny
    done
    run_in_image score plasticc-jax score --run runs/tiny-rare --lightcurves "$lightcurves" \
        --metadata "$metadata" --output runs/tiny-rare/score-check.parquet

    expect_file data/processed/rare/manifest.json
    expect_file runs/tiny-rare/scores.parquet
    expect_file runs/tiny-rare/metrics.json
    expect_file runs/tiny-rare/score-check.parquet
    compgen -G "$WORK/runs/tiny-rare/reports/figures/*.png" >/dev/null || die "no figures in reports/"
    local foreign
    foreign=$(find "$WORK/data" "$WORK/runs" \( ! -uid "$uid" -o ! -gid "$gid" \) -print | head)
    [[ -z $foreign ]] || die "files not owned by $uid:$gid: $foreign"
    note "  outputs: $(find "$WORK/data" "$WORK/runs" -type f | wc -l) files, all owned by $uid:$gid"
    { grep -h "JAX runs on" "$WORK"/*.log || true; } | head -n1 | sed "s/^/  /"

    say "rebuild after a one-line edit of the package"
    local edit=$WORK/context before after changed bytes
    mkdir "$edit"
    cp -r Dockerfile .dockerignore pyproject.toml README.md plasticc_jax docker "$edit/"
    printf '\n# docker-test: a one-line edit (%s)\n' "$(date +%s)" >>"$edit/plasticc_jax/__init__.py"
    start=$SECONDS
    build "$edit" "$IMAGE-edit" edit
    local rebuild=$((SECONDS - start))
    mapfile -t before < <(layers "$IMAGE")
    mapfile -t after < <(layers "$IMAGE-edit")
    ((${#before[@]} == ${#after[@]})) || die "the edit changed the number of layers"
    local i first=-1
    for i in "${!after[@]}"; do
        if [[ ${after[$i]} != "${before[$i]}" ]]; then
            first=$i
            break
        fi
    done
    ((first >= 0)) || die "the edit changed no layer: the build reused a stale layer"
    changed=$((${#after[@]} - first))
    # The wheel (COPY) and its installation (RUN): nothing before them, the dependencies least.
    ((changed <= 2)) || die "the edit rebuilt $changed layers (from layer $((first + 1)))"
    # Their sizes: the newest entries of the history that have a size (config steps have none).
    # Sizes as the engines print them ("700 kB", "700kB", "1.2 MB", "0 B"), turned into bytes.
    bytes=$("$ENGINE" history --format '{{.Size}}' "$IMAGE-edit" | awk -v n="$changed" '
        {
            match($0, /^[0-9.]+/)
            value = substr($0, 1, RLENGTH)
            unit = toupper(substr($0, RLENGTH + 1))
            gsub(/[^A-Z]/, "", unit)
            scale = 1
            if (unit ~ /^K/) scale = 1e3
            if (unit ~ /^M/) scale = 1e6
            if (unit ~ /^G/) scale = 1e9
            if (value > 0 && n > 0) { total += value * scale; n-- }
        }
        END { printf "%d\n", total }')
    "$ENGINE" rmi "$IMAGE-edit" >/dev/null 2>&1 || true
    ((bytes < MAX_EDIT_LAYER_BYTES)) || die "the edit changed $bytes bytes of layers (>= 10 MB)"
    note "rebuild after a one-line edit: $(elapsed "$rebuild"); $changed layers changed, $((bytes / 1000)) kB"
    ((rebuild < 60)) || printf 'docker-test: warning: the rebuild took over a minute\n' >&2

    if [[ ${DOCKER_TEST_CUDA:-0} == 1 ]]; then
        cuda_without_gpu "$uid" "$gid"
    fi
    if [[ ${DOCKER_TEST_SUITE:-0} == 1 ]]; then
        suite_in_image
    fi

    say "docker-test passed in $(elapsed "$SECONDS")"
    printf '%s\n' "${SUMMARY[@]}"
}

main "$@"
