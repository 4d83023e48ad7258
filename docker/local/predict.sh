#!/usr/bin/env bash
# POST one image to the model served by serve_local.sh and print the JSON answer:
# {"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]} (coordinates as fractions).
#   bash docker/local/predict.sh [IMAGE_FILE]     (default: the first demo validation image)
# Waits up to TIMEOUT seconds (default 120) for GET /ping. ACCEPT=application/json;annotation=1
# asks for the annotation style (pixels) instead.
# shellcheck source=docker/local/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

file="${1:-}"
if [ -z "$file" ]; then
    file="$(find "$OPT_ML/input/data/validation" -type f 2> /dev/null | sort | head -n 1)"
    [ -n "$file" ] || { echo "predict.sh: give an image file (no demo data in $OPT_ML)" >&2; exit 1; }
fi
case "$file" in
    *.[jJ][pP][gG]|*.[jJ][pP][eE][gG]) content_type=image/jpeg ;;
    *.[pP][nN][gG]) content_type=image/png ;;
    *) content_type=application/x-image ;;
esac
url="http://127.0.0.1:$PORT"
deadline=$((SECONDS + ${TIMEOUT:-120}))
until curl -sf -o /dev/null --max-time 2 "$url/ping"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "predict.sh: $url/ping did not answer 200 within ${TIMEOUT:-120} s" >&2
        exit 1
    fi
    sleep 0.5
done
echo "predict.sh: POST $file ($content_type) to $url/invocations" >&2
curl -sS --fail-with-body --max-time 60 -X POST -H "Content-Type: $content_type" \
    -H "Accept: ${ACCEPT:-application/json}" --data-binary "@$file" "$url/invocations"
echo
