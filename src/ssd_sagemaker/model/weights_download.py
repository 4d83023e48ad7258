"""`ssd-sagemaker fetch-weights`: download GluonCV's ImageNet weights of every base network in
`BACKBONES` into the model cache ($MXNET_HOME/models), for local runs and the image build.

GluonCV's own `get_model_file` would do it, but its download has no timeout (offline it can
hang), and importing GluonCV imports MXNet (which the GPU wheel cannot do at image build time,
without a driver). So the store's address and archive layout are GluonCV's (a test holds them to
`gluoncv.model_zoo.model_store`), the SHA-1 is the registry's, and the transfer is ours: bounded
by a socket timeout, written under a temporary name, moved into place only once its SHA-1 is
right. Training only looks the files up (model/network.py `pretrained_base_file`)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import Backbone
from ssd_sagemaker.progress import Progress
from ssd_sagemaker.variables import MXNET_GLUON_REPO

LOG = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 30.0
CHUNK_BYTES = 1 << 20
# gluoncv.model_zoo.model_store's `apache_repo_url` and `_url_format`.
GLUONCV_REPO_URL = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
STORE_URL_FORMAT = "{repo_url}gluon/models/{file_name}.zip"


def store_repo_url(environ: Mapping[str, str] = os.environ) -> str:
    """GluonCV's model store, or the mirror in `$MXNET_GLUON_REPO` (GluonCV's own variable)."""
    return environ.get(MXNET_GLUON_REPO) or GLUONCV_REPO_URL


def store_url(backbone: Backbone, repo_url: str) -> str:
    """Where the store keeps the zipped weights file."""
    return STORE_URL_FORMAT.format(repo_url=repo_url.rstrip("/") + "/",
                                   file_name=Path(backbone.weights_file).stem)


def published_sha1(backbone: Backbone) -> str:
    """The SHA-1 GluonCV's store publishes for the backbone's weights."""
    return backbone.weights_sha1


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_one(backbone: Backbone, cache_dir: Path, repo_url: str, timeout: float,
                  sha1: str) -> Path:
    """Fetch the zip, take the weights file out of it, check its SHA-1, move it into place;
    nothing is left in `cache_dir` when any step fails."""
    url = store_url(backbone, repo_url)
    target = cache_dir / backbone.weights_file
    LOG.info("downloading %s from %s", backbone.weights_file, url)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as scratch:
        archive = Path(scratch) / "weights.zip"
        with urllib.request.urlopen(url, timeout=timeout) as response, \
                open(archive, "wb") as out, \
                Progress(f"fetch-weights: {backbone.weights_file}", response.length, "B",
                         LOG) as progress:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                progress.advance(len(chunk))
        try:
            with zipfile.ZipFile(archive) as bundle:
                extracted = Path(bundle.extract(backbone.weights_file, scratch))
        except (zipfile.BadZipFile, KeyError) as error:
            raise ClientError(f"{url} is not GluonCV's archive of {backbone.weights_file} "
                              f"({error}); nothing was written to {cache_dir}.") from None
        actual = file_sha1(extracted)
        if actual != sha1:
            raise ClientError(f"{backbone.weights_file} downloaded from {url} has SHA-1 {actual}, "
                              f"but GluonCV publishes {sha1}: the download is corrupt or the "
                              f"mirror is wrong; nothing was written to {cache_dir}.")
        os.replace(extracted, target)
    return target


def fetch_weights(backbones: Iterable[Backbone], cache_dir: Path, repo_url: str,
                  timeout: float = DEFAULT_TIMEOUT_SECONDS,
                  sha1: Callable[[Backbone], str] = published_sha1) -> list[Path]:
    """Each backbone's weights file in `cache_dir`: kept when present with the right SHA-1,
    downloaded otherwise. No connection (or no answer within `timeout` seconds per socket
    operation) is a ClientError naming the missing files, the folder and the way out."""
    backbones = list(backbones)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, backbone in enumerate(backbones):
        expected = sha1(backbone)
        path = cache_dir / backbone.weights_file
        if path.is_file() and file_sha1(path) == expected:
            LOG.info("%s is already in %s (SHA-1 checked)", backbone.weights_file, cache_dir)
        else:
            try:
                path = _download_one(backbone, cache_dir, repo_url, timeout, expected)
            except OSError as error:  # URLError, HTTPError, socket timeouts, refused connections
                missing = [backbone.weights_file] + [
                    later.weights_file for later in backbones[index + 1:]
                    if not (cache_dir / later.weights_file).is_file()]
                raise ClientError(
                    f"could not download {', '.join(missing)} into {cache_dir} from {repo_url} "
                    f"({error}; timeout {timeout:g} s). Without the network, copy the files "
                    f"there from a machine that has them (the model cache is $MXNET_HOME/models), "
                    f"or train from scratch with use_pretrained_model=0.") from None
        paths.append(path)
    return paths
