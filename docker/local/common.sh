# shellcheck shell=bash
# Sourced by train_local.sh, serve_local.sh and predict.sh: the settings they share.
#   ENGINE   docker (default) or podman
#   IMAGE    the image to run (default ssd-sagemaker:cpu)
#   OPT_ML   the /opt/ml tree on this machine (default docker/local/opt_ml)
#   PORT     the port the model is served on (default 8080)
#   NAME     the serving container's name (default ssd-sagemaker-local)
#   RUN_FLAGS  extra `run` flags, appended (e.g. "--gpus all" for the GPU image)
# With podman: runc as runtime when it is installed (crun fails on hosts with hybrid cgroups),
# explicit ulimits (some hosts refuse podman's defaults) and the host network, where the server
# binds $PORT itself (SAGEMAKER_BIND_TO_PORT). Override with PODMAN_GLOBAL_FLAGS/PODMAN_RUN_FLAGS.
set -euo pipefail

LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINE="${ENGINE:-docker}"
IMAGE="${IMAGE:-ssd-sagemaker:cpu}"
OPT_ML="${OPT_ML:-$LOCAL_DIR/opt_ml}"
PORT="${PORT:-8080}"
NAME="${NAME:-ssd-sagemaker-local}"

if [ "$(basename "$ENGINE")" = podman ]; then
    if [ -z "${PODMAN_GLOBAL_FLAGS+set}" ]; then
        PODMAN_GLOBAL_FLAGS=""
        if command -v runc > /dev/null; then PODMAN_GLOBAL_FLAGS="--runtime runc"; fi
    fi
    if [ -z "${PODMAN_RUN_FLAGS+set}" ]; then
        PODMAN_RUN_FLAGS="--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network host"
    fi
    # shellcheck disable=SC2206 # word splitting of the flag strings is intended
    ENGINE_CMD=("$ENGINE" $PODMAN_GLOBAL_FLAGS)
    # shellcheck disable=SC2206
    ENGINE_RUN_FLAGS=($PODMAN_RUN_FLAGS)
    SERVE_PORT_FLAGS=(-e "SAGEMAKER_BIND_TO_PORT=$PORT") # used by serve_local.sh
else
    ENGINE_CMD=("$ENGINE")
    ENGINE_RUN_FLAGS=()
    # shellcheck disable=SC2034 # used by serve_local.sh
    SERVE_PORT_FLAGS=(-p "$PORT:8080")
fi
# shellcheck disable=SC2206
ENGINE_RUN_FLAGS+=(${RUN_FLAGS:-})

# `run_image ARGS...`: run the image once on the /opt/ml tree, as SageMaker runs a training job.
run_image() {
    "${ENGINE_CMD[@]}" run --rm ${ENGINE_RUN_FLAGS[@]+"${ENGINE_RUN_FLAGS[@]}"} --shm-size 1g \
        -v "$OPT_ML:/opt/ml" "$IMAGE" "$@"
}
