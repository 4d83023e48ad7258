"""artifact.py's manifest: written last with every file's size and SHA-256; a model whose files
do not match it (tampered, or a mixed set left by a crash between renames) is refused naming
the file, by serve's preflight, by loading (serve's workers, predict) and by a warm start; a
folder without a manifest is accepted with a warning."""

import json
import logging
import os
from pathlib import Path

import mxnet as mx
import pytest
from mxnet import gluon

from ssd_sagemaker import storage
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    MANIFEST_FILE,
    MODEL_INFO_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelInfo,
    load_exported_network,
    save_artifact,
)
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.serving.preflight import check_artifact
from ssd_sagemaker.training import warm_start
from tiny_model import CLASSES, TinyDetector, export_tiny_model


def _refusal(call, model_dir: Path) -> str:
    with pytest.raises(ClientError) as error:
        call(model_dir)
    return str(error.value)


CHECKS = {
    "preflight": check_artifact,
    "load": lambda model_dir: load_exported_network(model_dir, mx.cpu()),
    "warm start": lambda model_dir: warm_start.check_compatible(
        model_dir, NetworkIdentity("vgg-16", 64, len(CLASSES))),
}


def test_the_manifest_lists_every_file_with_its_size_and_sha256(tmp_path):
    model_dir = export_tiny_model(tmp_path)
    entries = json.loads((model_dir / MANIFEST_FILE).read_text())["files"]
    assert sorted(entries) == sorted(p.name for p in model_dir.iterdir()
                                     if p.name != MANIFEST_FILE)
    for name, entry in entries.items():
        assert entry == storage.fingerprint((model_dir / name).read_bytes())
    for check in CHECKS.values():
        check(model_dir)  # matches: accepted


@pytest.mark.parametrize("check", CHECKS)
def test_a_tampered_params_file_is_refused_naming_it(tmp_path, check):
    model_dir = export_tiny_model(tmp_path)
    params = model_dir / PARAMS_FILE
    data = bytearray(params.read_bytes())
    data[80] ^= 0x01  # one bit of one weight: still a valid, loadable parameters file
    params.write_bytes(bytes(data))
    gluon.SymbolBlock.imports(str(model_dir / SYMBOL_FILE), ["data"], str(params))
    message = _refusal(CHECKS[check], model_dir)
    assert message == (f"The model artifact in {model_dir} does not match its manifest.json: "
                       f"{PARAMS_FILE} differs from what was written (its SHA-256 does not "
                       f"match). It was changed after `train` wrote it, or written or copied "
                       f"only in part; serve the complete model.tar.gz written by this "
                       f"container's `train`.")


def _another_model():
    mx.random.seed(7)
    net = TinyDetector(64)
    net.initialize(mx.init.Uniform(3.0))
    net(mx.nd.zeros((1, 3, 64, 64)))
    return net


@pytest.mark.parametrize("check", CHECKS)
def test_a_crash_between_renames_over_an_older_artifact_is_refused(tmp_path, monkeypatch,
                                                                     check):
    """The new symbol and parameters renamed, the old side files and manifest still there: a
    mixed set that MXNet loads without complaint."""
    model_dir = export_tiny_model(tmp_path)
    renames, replace = [], os.replace

    def crash_after_two(source, target):
        if Path(source).name.endswith(storage.TEMPORARY_SUFFIX):  # write_files' renames
            if len(renames) == 2:
                raise SystemExit("killed")
            renames.append(Path(target).name)
        replace(source, target)

    monkeypatch.setattr(storage.os, "replace", crash_after_two)
    with pytest.raises(SystemExit):
        save_artifact(_another_model(), model_dir, ModelInfo(("a", "b", "c"), 64, "vgg-16", 0.5),
                      {"num_classes": 3})
    monkeypatch.undo()
    assert sorted(renames) == [PARAMS_FILE, SYMBOL_FILE]
    assert json.loads((model_dir / MODEL_INFO_FILE).read_text())["classes"] == list(CLASSES)
    gluon.SymbolBlock.imports(str(model_dir / SYMBOL_FILE), ["data"],
                              str(model_dir / PARAMS_FILE))  # loadable, and wrong
    message = _refusal(CHECKS[check], model_dir)
    assert f"does not match its manifest.json: {PARAMS_FILE} " in message


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    model_dir = export_tiny_model(tmp_path)
    (model_dir / "hyperparams.json").unlink()
    assert "manifest.json: hyperparams.json is missing." in _refusal(check_artifact, model_dir)


def test_a_model_without_a_manifest_is_accepted_with_a_warning(tmp_path, caplog):
    model_dir = export_tiny_model(tmp_path)
    (model_dir / MANIFEST_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        assert check_artifact(model_dir).classes == CLASSES
        load_exported_network(model_dir, mx.cpu())
    assert (f"the model artifact in {model_dir} has no manifest.json (written by an earlier "
            f"version or by hand): its files are not checked against one") in caplog.text


@pytest.mark.parametrize("text", ["{not json", '{"files": {"../x": {"bytes": 1, '
                                               '"sha256": "0"}}}', '{"files": [1]}'])
def test_a_broken_manifest_is_named(tmp_path, text):
    model_dir = export_tiny_model(tmp_path)
    (model_dir / MANIFEST_FILE).write_text(text)
    assert _refusal(check_artifact, model_dir).startswith(
        f"{model_dir / MANIFEST_FILE} is not a valid manifest")
