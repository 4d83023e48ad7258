"""Wait for a served model's /ping, POST one image to /invocations and print the answer.

Usage: python scripts/invoke.py URL IMAGE [--timeout SECONDS]
"""

import argparse
import json
import mimetypes
import sys
import time
import urllib.error
import urllib.request


def wait_until_ready(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.time() > deadline:
            sys.exit(f"error: {url}/ping did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("image")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    wait_until_ready(args.url, args.timeout)
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
