#!/bin/sh
# Leave the headless OpenCV build as the environment's `cv2`: gluoncv requires opencv-python
# (the GUI build, which needs libGL.so.1 and libglib, absent on slim and headless hosts), and
# both builds write the same cv2 package, the one installed last winning. Removes the GUI build
# and reinstalls the headless one at the version already resolved. The Dockerfile, the
# development venv (scripts/setup_venv.sh) and a pip install by hand (README) all run it:
#   sh scripts/use_headless_opencv.sh [PYTHON]        (default: python3 on PATH)
set -eu
python="${1:-python3}"
headless="$("$python" -m pip show opencv-python-headless 2>/dev/null | sed -n 's/^Version: //p')"
if [ -z "$headless" ]; then
    echo "use_headless_opencv.sh: opencv-python-headless is not installed in $python's environment" >&2
    exit 1
fi
if "$python" -m pip show --quiet opencv-python 2>/dev/null; then
    "$python" -m pip uninstall --quiet --disable-pip-version-check -y opencv-python
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
        "opencv-python-headless==${headless}"
fi
