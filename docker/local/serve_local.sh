#!/usr/bin/env bash
# Serve $OPT_ML/model (written by train_local.sh) from the container, the way SageMaker runs
# `IMAGE serve`: the model mounted read-only at /opt/ml/model, HTTP on 127.0.0.1:$PORT
# (GET /ping, POST /invocations). Runs in the foreground: Ctrl-C (or `$ENGINE stop $NAME`) stops it.
#   ENGINE=podman IMAGE=localhost/ssd-sagemaker:cpu bash docker/local/serve_local.sh
# shellcheck source=docker/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

OPT_ML="$(cd "$OPT_ML" && pwd)"
if [ ! -d "$OPT_ML/model" ]; then
    echo "serve_local.sh: no model in $OPT_ML/model: run train_local.sh first" >&2
    exit 1
fi
echo "serve_local.sh: serving $OPT_ML/model on http://127.0.0.1:$PORT (container $NAME)" >&2
exec "${ENGINE_CMD[@]}" run --rm --name "$NAME" ${ENGINE_RUN_FLAGS[@]+"${ENGINE_RUN_FLAGS[@]}"} "${SERVE_PORT_FLAGS[@]}" \
    -v "$OPT_ML/model:/opt/ml/model:ro" "$IMAGE" serve
