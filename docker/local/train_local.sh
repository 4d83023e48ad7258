#!/usr/bin/env bash
# Train in the container on a local /opt/ml tree, the way SageMaker runs `IMAGE train`.
# The tree (default docker/local/opt_ml) gets the example config files if it lacks them and,
# when it has no training data yet, the synthetic demo data written by the image itself
# (`demo-data`: TRAIN_IMAGES, VALIDATION_IMAGES, default the demo's 96 and 16; the example
# hyperparameters.json is the demo's job, from the image's ImageNet weights). Then: the metric lines on
# stdout, the model in $OPT_ML/model, output/success or output/failure, and the exit status.
#   ENGINE=podman IMAGE=localhost/ssd-sagemaker:cpu bash docker/local/train_local.sh
# shellcheck source=docker/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

mkdir -p "$OPT_ML/input/config"
OPT_ML="$(cd "$OPT_ML" && pwd)"
for file in "$LOCAL_DIR"/opt_ml/input/config/*.json; do
    [ -e "$OPT_ML/input/config/$(basename "$file")" ] || cp "$file" "$OPT_ML/input/config/"
done
if [ -z "$(ls -A "$OPT_ML/input/data/train" 2> /dev/null)" ]; then
    echo "train_local.sh: writing demo data into $OPT_ML/input/data" >&2
    run_image demo-data ${TRAIN_IMAGES:+--train-images "$TRAIN_IMAGES"} \
        ${VALIDATION_IMAGES:+--validation-images "$VALIDATION_IMAGES"}
fi
rm -f "$OPT_ML/output/success" "$OPT_ML/output/failure"
echo "train_local.sh: $ENGINE run $IMAGE train on $OPT_ML" >&2
run_image train
