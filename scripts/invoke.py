"""Wait for a served model's /ping, POST one image to /invocations and print the answer.

Usage: python scripts/invoke.py URL IMAGE [--timeout SECONDS]
"""

import argparse
import json
import mimetypes
import sys
import urllib.request

from ssd_sagemaker.serving.loopback import NotHealthy, wait_until_healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("image")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    try:
        wait_until_healthy(args.url, args.timeout, interval=0.5)
    except NotHealthy as error:
        sys.exit(f"error: {error}")
    with open(args.image, "rb") as handle:
        body = handle.read()
    content_type = mimetypes.guess_type(args.image)[0] or "application/x-image"
    request = urllib.request.Request(f"{args.url}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        prediction = json.load(response)
    rows = prediction["prediction"]
    print(f"POST /invocations {args.image} -> {len(rows)} detections "
          "[class_id, score, xmin, ymin, xmax, ymax]; the 5 best:")
    for row in rows[:5]:
        print("  " + json.dumps([round(value, 4) for value in row]))


if __name__ == "__main__":
    main()
