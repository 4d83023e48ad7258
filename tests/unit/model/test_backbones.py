"""backbones.py: one record per base network is all the code needs to know about it — a new
record is usable by the hyperparameters, the builder, freeze_layer_pattern, precision and the
image's weights download without touching them."""

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest
from gluoncv.model_zoo.model_store import short_hash

import ssd_sagemaker.model.backbones as backbones
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters
from ssd_sagemaker.model.backbones import BACKBONES, VGG16
from ssd_sagemaker.model.layers import freeze_layers
from ssd_sagemaker.model.network import build_network, pretrained_base_file
from ssd_sagemaker.training.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[3]
WEIGHTS_SCRIPT = ROOT / "docker" / "weights.py"


def _load_weights_script():
    spec = importlib.util.spec_from_file_location("weights_script", WEIGHTS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", list(BACKBONES))
def test_weights_file_is_the_one_gluoncv_model_store_writes(name):
    backbone = BACKBONES[name]
    expected = f"{backbone.model_store_name}-{short_hash(backbone.model_store_name)}.params"
    assert backbone.weights_file == expected


def test_base_network_choices_are_the_registry():
    hp = parse_hyperparameters({"num_classes": "1", "num_training_samples": "4",
                                "base_network": "resnet-50"})
    assert hp.base_network == "resnet-50"
    with pytest.raises(ClientError) as error:
        parse_hyperparameters({"num_classes": "1", "num_training_samples": "4",
                               "base_network": "resnet-18"})
    for name in BACKBONES:
        assert name in str(error.value)


def test_a_new_backbone_is_one_registry_entry(monkeypatch, tmp_path):
    """A third base registered under a new name builds, freezes by documented name, gets its
    own precision verdict and its own weights file name — no other module knows about it."""
    third = dataclasses.replace(VGG16, name="vgg-16-fp32", bfloat16_pays_on_cpu=False,
                                weights_file="third-00000000.params")
    monkeypatch.setitem(BACKBONES, third.name, third)

    net = build_network(third.name, 300, ["a"])
    assert freeze_layers(net, third.name, "^conv1_") == ["conv1_1", "conv1_2"]
    assert resolve_precision("auto", third.name, [mx.cpu()], None, bfloat16_cpu=True) == "float32"
    assert resolve_precision("auto", "vgg-16", [mx.cpu()], None, bfloat16_cpu=True) == "bfloat16"
    with pytest.raises(ClientError, match="third-00000000.params"):
        pretrained_base_file(third.name, tmp_path)


def test_registry_module_loads_alone_from_its_file(tmp_path):
    """The image's weights stage copies only backbones.py: it must import nothing of the
    package (nor MXNet or GluonCV at import time)."""
    copy = tmp_path / "backbones.py"
    copy.write_text(Path(backbones.__file__).read_text())
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import weights; "
             "r = weights.load_registry(sys.argv[2]); "
             "assert 'mxnet' not in sys.modules and 'ssd_sagemaker' not in sys.modules, "
             "sorted(m for m in sys.modules if m.startswith(('mxnet', 'ssd_sagemaker'))); "
             "print(' '.join(b.weights_file for b in r.BACKBONES.values()))")
    result = subprocess.run([sys.executable, "-c", probe, str(WEIGHTS_SCRIPT.parent), str(copy)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b.weights_file for b in BACKBONES.values()]


def test_weights_script_fetches_every_registry_entry(tmp_path):
    script = _load_weights_script()
    asked = []

    def store(name, root):
        asked.append(name)
        path = Path(root) / f"{name}-{short_hash(name)}.params"
        path.write_bytes(b"weights")
        (Path(root) / f"{name}.lock").write_bytes(b"")
        return str(path)

    paths = script.fetch(BACKBONES.values(), tmp_path, store)
    assert asked == [b.model_store_name for b in BACKBONES.values()]
    assert paths == [tmp_path / b.weights_file for b in BACKBONES.values()]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(b.weights_file
                                                                for b in BACKBONES.values())


def test_weights_script_refuses_a_registry_file_name_the_store_does_not_write(tmp_path):
    script = _load_weights_script()
    wrong = dataclasses.replace(VGG16, weights_file="vgg16_atrous-deadbeef.params")

    def store(name, root):
        return str(Path(root) / f"{name}-{short_hash(name)}.params")

    with pytest.raises(ValueError, match="vgg16_atrous-deadbeef.params"):
        script.fetch([wrong], tmp_path, store)
