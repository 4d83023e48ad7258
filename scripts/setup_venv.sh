# Sourced by demo.sh and test.sh: create ./.venv with Python 3.11 (once) and install the
# project into it (with EXTRAS, e.g. EXTRAS=test; none by default) at the versions of the lock
# (constraints.txt, refreshed by `python scripts/lock.py`), headless OpenCV as cv2, then put it
# first on PATH.
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
    -e ".${EXTRAS:+[$EXTRAS]}"
sh scripts/use_headless_opencv.sh .venv/bin/python
export PATH="$PWD/.venv/bin:$PATH"
