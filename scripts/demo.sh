#!/usr/bin/env bash
# The demo: set up ./.venv, write the synthetic shapes in SageMaker's /opt/ml layout under
# ./demo/opt_ml (a training set and a held-out validation set), train on CPU (from ImageNet
# weights if `ssd-sagemaker fetch-weights` put them in the cache, from scratch otherwise), print
# the held-out mAP, serve the model and send one held-out image, and draw the detections of
# every held-out image into demo/predictions/<name>.annotated.jpg.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_venv.sh
export SAGEMAKER_BASE_DIR="$PWD/demo/opt_ml"
export SAGEMAKER_BIND_TO_PORT="${DEMO_PORT:-8080}"
rm -rf demo
started=$SECONDS
echo "== 1/4 demo data -> $SAGEMAKER_BASE_DIR/input"
ssd-sagemaker demo-data
echo "== 2/4 train on CPU"
ssd-sagemaker train
python scripts/demo_summary.py "$SAGEMAKER_BASE_DIR/output/data/metrics.jsonl"
image="$SAGEMAKER_BASE_DIR/input/data/validation/validation_0005.jpg"
echo "== 3/4 serve on port $SAGEMAKER_BIND_TO_PORT and invoke with one held-out image"
ssd-sagemaker serve > demo/serve.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python scripts/invoke.py "http://127.0.0.1:$SAGEMAKER_BIND_TO_PORT" "$image"
echo "== 4/4 draw the detections scoring at least 0.5 in every held-out image"
ssd-sagemaker predict "$SAGEMAKER_BASE_DIR/input/data/validation" --output demo/predictions
echo "annotated images: demo/predictions/*.annotated.jpg ($((SECONDS - started)) s)"
