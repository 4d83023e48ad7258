"""`ssd-sagemaker fetch-weights` (model/weights_download.py): the store's files land in the model
cache only with the right SHA-1; without the network it fails fast, naming the files, the folder
and `use_pretrained_model=0`. Real HTTP over a local socket, real network namespaces."""

import dataclasses
import hashlib
import http.server
import io
import shutil
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from cli_runner import cli_env
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.backbones import BACKBONES, RESNET50
from ssd_sagemaker.model.weights_download import (
    GLUONCV_REPO_URL,
    STORE_URL_FORMAT,
    fetch_weights,
    store_url,
)

WEIGHTS = b"\x12not really resnet weights\x00" * 100
FAKE = dataclasses.replace(RESNET50, model_store_name="fake_net",
                           weights_file="fake_net-" + hashlib.sha1(WEIGHTS).hexdigest()[:8]
                           + ".params")


def _zip_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr(name, content)
    return buffer.getvalue()


class _Store:
    """A local HTTP model store serving `files` (URL path → bytes) and counting requests."""

    def __init__(self, files: dict[str, bytes]):
        self.requests: list[str] = []
        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                store.requests.append(self.path)
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _fake_sha1(backbone):
    return hashlib.sha1(WEIGHTS).hexdigest()


def test_store_address_and_sha1_are_gluoncvs():
    """Kept apart from GluonCV (whose import needs MXNET), so held to it here."""
    from gluoncv.model_zoo import model_store

    assert (GLUONCV_REPO_URL, STORE_URL_FORMAT) == (model_store.apache_repo_url,
                                                    model_store._url_format)
    for backbone in BACKBONES.values():
        assert backbone.weights_sha1 == model_store._model_sha1[backbone.model_store_name]
    url = store_url(BACKBONES["resnet-50"], "https://example.org/repo")
    assert url == "https://example.org/repo/gluon/models/resnet50_v1-cc729d95.zip"


def test_downloads_checks_sha1_and_keeps_a_verified_file(tmp_path):
    path = "/gluon/models/" + FAKE.weights_file.replace(".params", ".zip")
    cache = tmp_path / "models"
    with _Store({path: _zip_of(FAKE.weights_file, WEIGHTS)}) as store:
        written = fetch_weights([FAKE], cache, store.url, timeout=5, sha1=_fake_sha1)
        assert written == [cache / FAKE.weights_file]
        assert written[0].read_bytes() == WEIGHTS
        assert sorted(p.name for p in cache.iterdir()) == [FAKE.weights_file]
        fetch_weights([FAKE], cache, store.url, timeout=5, sha1=_fake_sha1)
        assert store.requests == [path]  # present with the right SHA-1: not downloaded again


def test_a_file_with_the_wrong_sha1_is_refused_and_not_written(tmp_path):
    path = "/gluon/models/" + FAKE.weights_file.replace(".params", ".zip")
    cache = tmp_path / "models"
    with _Store({path: _zip_of(FAKE.weights_file, WEIGHTS + b"tampered")}) as store:
        with pytest.raises(ClientError) as error:
            fetch_weights([FAKE], cache, store.url, timeout=5, sha1=_fake_sha1)
    message = str(error.value)
    assert FAKE.weights_file in message and "SHA-1" in message and _fake_sha1(FAKE) in message
    assert list(cache.iterdir()) == []


def test_a_corrupt_cached_file_is_downloaded_again(tmp_path):
    path = "/gluon/models/" + FAKE.weights_file.replace(".params", ".zip")
    cache = tmp_path / "models"
    cache.mkdir()
    (cache / FAKE.weights_file).write_bytes(b"truncated")
    with _Store({path: _zip_of(FAKE.weights_file, WEIGHTS)}) as store:
        fetch_weights([FAKE], cache, store.url, timeout=5, sha1=_fake_sha1)
    assert store.requests == [path]
    assert (cache / FAKE.weights_file).read_bytes() == WEIGHTS


def test_missing_from_the_store_names_the_files_and_the_way_out(tmp_path):
    cache = tmp_path / "models"
    with _Store({}) as store, pytest.raises(ClientError) as error:
        fetch_weights(BACKBONES.values(), cache, store.url, timeout=5)
    message = str(error.value)
    for backbone in BACKBONES.values():
        assert backbone.weights_file in message
    assert str(cache) in message and "use_pretrained_model=0" in message and "404" in message


def test_a_store_that_never_answers_fails_within_the_timeout(tmp_path):
    """A listening socket that accepts and never replies: the download gives up on time."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        started = time.monotonic()
        with pytest.raises(ClientError, match="timed out") as error:
            fetch_weights([FAKE], tmp_path / "models", f"http://127.0.0.1:{silent.getsockname()[1]}",
                          timeout=1, sha1=_fake_sha1)
        assert time.monotonic() - started < 10
        assert "use_pretrained_model=0" in str(error.value)
    finally:
        silent.close()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_fetch_weights_offline_fails_fast_with_a_clear_message(tmp_path):
    """The real command in a network namespace with no network at all (as root)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not allowed here: {probe.stderr!r}")
    env = cli_env(tmp_path)
    env.pop("MXNET_GLUON_REPO", None)  # GluonCV's real store
    started = time.monotonic()
    result = subprocess.run(["unshare", "-n", sys.executable, "-m", "ssd_sagemaker",
                             "fetch-weights", "--timeout", "5"],
                            env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    cache = Path(env["MXNET_HOME"]) / "models"
    for backbone in BACKBONES.values():
        assert backbone.weights_file in output
    assert str(cache) in output and "use_pretrained_model=0" in output
    assert "Traceback" not in output
    assert elapsed < 60
    assert [p.name for p in cache.iterdir()] == []


def test_fetch_weights_imports_no_mxnet(tmp_path):
    """The GPU image's build runs it where mxnet-cu112 cannot be imported (no driver)."""
    probe = ("import sys; from ssd_sagemaker.cli import main; "
             "code = main(['fetch-weights', '--timeout', '5']); "
             "print('RESULT', code, 'mxnet' in sys.modules, 'gluoncv' in sys.modules)")
    with _Store({}) as store:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                env=cli_env(tmp_path, MXNET_GLUON_REPO=store.url), timeout=60)
    assert "RESULT 1 False False" in result.stdout, result.stdout + result.stderr
    assert store.requests  # it did try the mirror named by MXNET_GLUON_REPO
