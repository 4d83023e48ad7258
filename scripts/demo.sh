#!/usr/bin/env bash
# The demo: set up ./.venv, write a synthetic dataset in SageMaker's /opt/ml layout under
# ./demo/opt_ml, train 2 epochs on CPU, serve the model, send one image, print the prediction.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_venv.sh
export SAGEMAKER_BASE_DIR="$PWD/demo/opt_ml"
export SAGEMAKER_BIND_TO_PORT="${DEMO_PORT:-8080}"
rm -rf demo
echo "== 1/3 demo data -> $SAGEMAKER_BASE_DIR/input"
ssd-sagemaker demo-data
echo "== 2/3 train (2 epochs on CPU)"
ssd-sagemaker train
echo "== 3/3 serve on port $SAGEMAKER_BIND_TO_PORT and invoke with one validation image"
ssd-sagemaker serve > demo/serve.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python scripts/invoke.py "http://127.0.0.1:$SAGEMAKER_BIND_TO_PORT" \
    "$SAGEMAKER_BASE_DIR/input/data/validation/validation_0000.jpg"
