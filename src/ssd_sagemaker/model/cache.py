"""Where GluonCV's model cache is: training looks pretrained weights up there
(model/network.py) and `fetch-weights` fills it (model/weights_download.py). No MXNet import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ssd_sagemaker.variables import MXNET_HOME


def model_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """GluonCV's model cache: `$MXNET_HOME/models`, default `~/.mxnet/models`."""
    home = environ.get(MXNET_HOME) or os.path.join("~", ".mxnet")
    return Path(home).expanduser() / "models"
