"""warm_start.py: an earlier artifact (folder or model.tar.gz) warm-starts the same network;
a different network is refused naming both values."""

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deadline import deadline
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.artifact import (
    MODEL_INFO_FILE,
    PARAMS_FILE,
    SYMBOL_FILE,
    ModelInfo,
    save_artifact,
)
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.training import warm_start


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    directory = tmp_path_factory.mktemp("artifact")
    net = build_network("vgg-16", 300, ["a", "b"])
    save_artifact(net, directory, ModelInfo(("a", "b"), 300, "vgg-16", 0.45), {})
    return directory, net


@pytest.mark.slow  # builds a full network, starts a process or collects the suite
def test_folder_and_tarball_are_found_and_the_extraction_removed(artifact, tmp_path):
    directory, _ = artifact
    with warm_start.located_artifact(directory) as found:
        assert found == directory
    assert directory.is_dir()  # a channel's own folder is left alone
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as archive:
        for path in directory.iterdir():
            archive.add(path, arcname=path.name)
    with warm_start.located_artifact(tmp_path) as extracted:
        assert (extracted / PARAMS_FILE).read_bytes() == (directory / PARAMS_FILE).read_bytes()
    assert not extracted.exists()


def test_empty_channel_is_a_client_error(tmp_path):
    with pytest.raises(ClientError, match="holds no artifact"):
        with warm_start.located_artifact(tmp_path):
            pass


def test_mismatches_name_both_values(artifact):
    directory, _ = artifact
    warm_start.check_compatible(directory, NetworkIdentity("vgg-16", 300, 2))
    with pytest.raises(ClientError) as error:
        warm_start.check_compatible(directory, NetworkIdentity("resnet-50", 512, 3))
    message = str(error.value)
    assert "num_classes: the model has 2, the job asks for 3" in message
    assert "base_network: the model has 'vgg-16', the job asks for 'resnet-50'" in message
    assert "image_shape: the model has 300, the job asks for 512" in message


def test_weights_are_loaded_into_a_new_network(artifact):
    directory, trained = artifact
    fresh = build_network("vgg-16", 300, ["a", "b"])
    warm_start.load_weights(fresh, warm_start.read_weights(directory))
    expected = {k.split("_", 1)[1]: v.data().asnumpy() for k, v in trained.collect_params().items()}
    for name, param in fresh.collect_params().items():
        np.testing.assert_array_equal(param.data().asnumpy(), expected[name.split("_", 1)[1]],
                                      err_msg=name)


def test_a_network_of_another_size_does_not_fit(artifact):
    directory, _ = artifact
    with pytest.raises(ClientError, match="does not fit the network"):
        warm_start.load_weights(build_network("vgg-16", 300, ["a", "b", "c"]),
                                warm_start.read_weights(directory))


# --- model.tar.gz extraction: safe on every Python 3.11.x, hostile members refused ------------

def _tarball(path, *members):
    """A gzipped tarball of hand-made members: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.fixture
def small_artifact(tmp_path):
    """The artifact's files with a stand-in for the 100 MB of weights (extraction is all that
    is tested with it)."""
    directory = tmp_path / "small_artifact"
    directory.mkdir()
    (directory / MODEL_INFO_FILE).write_text(json.dumps(
        {"classes": ["a", "b"], "image_shape": 300, "base_network": "vgg-16",
         "nms_threshold": 0.45}))
    (directory / SYMBOL_FILE).write_text("{}")
    (directory / PARAMS_FILE).write_bytes(os.urandom(300_000))
    return directory


@pytest.fixture
def channel(tmp_path):
    """An empty model channel, with a sibling folder an escaping member would reach."""
    (tmp_path / "channel").mkdir()
    return tmp_path / "channel"


HOSTILE = {
    "dot-dot path": ([(_member("../escaped.txt"), b"x")], "'../escaped.txt', whose path leads "
                                                          "outside the archive's folder"),
    "nested dot-dot": ([(_member("model/../../escaped.txt"), b"x")],
                       "'model/../../escaped.txt', whose path leads outside"),
    "absolute path": ([(_member("/tmp/ssd-escaped.txt"), b"x")],
                      "'/tmp/ssd-escaped.txt', whose path is absolute"),
    "absolute symlink": ([(_member("etc", tarfile.SYMTYPE, "/etc"), None)],
                         "'etc', a symbolic link to '/etc', whose target is absolute"),
    "relative symlink out": ([(_member("up", tarfile.SYMTYPE, "../.."), None)],
                             "'up', a symbolic link to '../..', whose target leads outside"),
    "path through an inner link": (
        [(_member("sub", tarfile.DIRTYPE), None),
         (_member("sub/root", tarfile.SYMTYPE, ".."), None),
         (_member("sub/root/../escaped.txt"), b"x")],
        "'sub/root/../escaped.txt', whose path leads outside"),
    "link re-pointed by a later link": (
        [(_member("x", tarfile.SYMTYPE, "y/.."), None), (_member("y", tarfile.SYMTYPE, "."), None)],
        "'x', a symbolic link to 'y/..', whose target leads outside"),
    "hard link out": ([(_member("passwd", tarfile.LNKTYPE, "../../etc/passwd"), None)],
                      "'passwd', a hard link to '../../etc/passwd', whose target leads outside"),
    "absolute hard link": ([(_member("passwd", tarfile.LNKTYPE, "/etc/passwd"), None)],
                           "'passwd', a hard link to '/etc/passwd', whose target is absolute"),
    "character device": ([(_member("null", tarfile.CHRTYPE), None)], "'null', a character device"),
    "block device": ([(_member("sda", tarfile.BLKTYPE), None)], "'sda', a block device"),
    "fifo": ([(_member("pipe", tarfile.FIFOTYPE), None)], "'pipe', a FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_by_name(case, channel, tmp_path):
    members, expected = HOSTILE[case]
    _tarball(channel / "model.tar.gz", *members)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ClientError) as error:
        with warm_start.located_artifact(channel):
            pass
    message = str(error.value)
    assert message.startswith("The model channel's model.tar.gz holds ") and expected in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing landed outside
    assert not Path("/tmp/ssd-escaped.txt").exists()


def test_links_inside_the_archive_are_extracted(channel, small_artifact):
    directory = small_artifact
    params = (directory / PARAMS_FILE).read_bytes()
    members = [(_member(f"model/{p.name}"), p.read_bytes()) for p in sorted(directory.iterdir())
               if p.name != PARAMS_FILE]
    members += [(_member("weights/real.params"), params),
                (_member(f"model/{PARAMS_FILE}", tarfile.SYMTYPE,
                         "../weights/real.params"), None),
                (_member("copy.params", tarfile.LNKTYPE, "weights/real.params"), None)]
    _tarball(channel / "model.tar.gz", *members)
    with warm_start.located_artifact(channel) as found:
        assert found.name == "model"
        assert (found / PARAMS_FILE).read_bytes() == params
        assert (found.parent / "copy.params").read_bytes() == params
        warm_start.check_compatible(found, NetworkIdentity("vgg-16", 300, 2))


@pytest.mark.parametrize("target", [
    [(_member("a", tarfile.DIRTYPE), None)],               # a directory
    [],                                                    # nothing
    [(_member("a", tarfile.SYMTYPE, "b"), None)],          # a symbolic link
])
def test_a_hard_link_to_what_is_not_a_file_is_a_client_error(tmp_path, target):
    """Found by the random-archive test: tarfile has no data for such a link."""
    _tarball(tmp_path / "model.tar.gz", *target, (_member("h", tarfile.LNKTYPE, "a"), None))
    (tmp_path / "out").mkdir()
    with pytest.raises(ClientError, match="holds 'h', a hard link to 'a', which is not a file "
                                          "of the archive"):
        warm_start.extract_archive(tmp_path / "model.tar.gz", tmp_path / "out")


def test_a_truncated_archive_is_a_client_error(channel, small_artifact):
    directory = small_artifact
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w:gz", compresslevel=1) as archive:
        archive.add(directory, arcname=".")
    (channel / "model.tar.gz").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(ClientError, match="model.tar.gz cannot be extracted"):
        with warm_start.located_artifact(channel):
            pass


def test_extraction_does_not_need_tarfiles_filter_argument(channel, small_artifact,
                                                            monkeypatch):
    """Python 3.11.2 (Debian bookworm, the image) has no `filter=`: calling with it is a
    TypeError there, which is how this test's TarFile behaves."""
    directory = small_artifact

    def refuse_filter(original):
        def call(self, *args, **kwargs):
            if "filter" in kwargs:
                raise TypeError(f"{original.__name__}() got an unexpected keyword argument "
                                f"'filter'")
            return original(self, *args, **kwargs)
        return call

    for name in ("extractall", "extract"):
        monkeypatch.setattr(tarfile.TarFile, name, refuse_filter(getattr(tarfile.TarFile, name)))
    for name in ("data_filter", "tar_filter", "fully_trusted_filter"):
        monkeypatch.delattr(tarfile, name, raising=False)
    with tarfile.open(channel / "model.tar.gz", "w:gz", compresslevel=1) as archive:
        for path in directory.iterdir():
            archive.add(path, arcname=path.name)
    with warm_start.located_artifact(channel) as extracted:
        warm_start.check_compatible(extracted, NetworkIdentity("vgg-16", 300, 2))
        assert (extracted / PARAMS_FILE).read_bytes() == (directory / PARAMS_FILE).read_bytes()


OLD_PYTHON_SCRIPT = r"""
import sys, tarfile, types
from pathlib import Path
assert not hasattr(tarfile, "data_filter"), "this Python has tarfile filters"
for name in ("mxnet", "mxnet.gluon"):  # extraction needs no MXNet; this Python has none
    sys.modules[name] = types.ModuleType(name)
sys.modules["mxnet"].gluon = sys.modules["mxnet.gluon"]
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.training import warm_start
good, hostile = Path(sys.argv[1]), Path(sys.argv[2])
with warm_start.located_artifact(good) as found:
    print("extracted", sorted(p.name for p in found.iterdir()))
try:
    with warm_start.located_artifact(hostile):
        pass
except ClientError as error:
    print("refused:", error)
"""


def test_extraction_on_the_images_python_without_filters(channel, small_artifact, tmp_path):
    """The image's Python (Debian bookworm's 3.11.2) where this machine has it."""
    candidates = ["/usr/bin/python3.11", "/usr/bin/python3"] + [
        shutil.which(name) for name in ("python3.11", "python3")]
    old = next((path for path in candidates if path and os.path.exists(path) and subprocess.run(
        [path, "-c", "import tarfile, sys; sys.exit(hasattr(tarfile, 'data_filter'))"],
        timeout=30).returncode == 0), None)
    if old is None:
        pytest.skip("no Python 3.11 without tarfile filters (< 3.11.4) on this machine")
    with tarfile.open(channel / "model.tar.gz", "w:gz", compresslevel=1) as archive:
        for path in small_artifact.iterdir():
            archive.add(path, arcname=path.name)
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    _tarball(hostile / "model.tar.gz", (_member("../escaped.txt"), b"x"))
    result = subprocess.run([old, "-c", OLD_PYTHON_SCRIPT, str(channel), str(hostile)],
                            env=dict(os.environ, PYTHONPATH=str(Path(warm_start.__file__)
                                                                .parents[2])),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"extracted {sorted([MODEL_INFO_FILE, PARAMS_FILE, SYMBOL_FILE])}" in result.stdout
    assert "refused: The model channel's model.tar.gz holds '../escaped.txt', whose path leads " \
           "outside the archive's folder" in result.stdout
    assert not (tmp_path / "escaped.txt").exists()


SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "/", "model", "/tmp", "/etc"])
MEMBER_KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                                tarfile.LNKTYPE, tarfile.FIFOTYPE])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(MEMBER_KINDS, st.lists(SEGMENTS, min_size=1, max_size=4),
                          st.lists(SEGMENTS, min_size=1, max_size=4)), min_size=1, max_size=6))
def test_no_archive_writes_outside_its_folder(members):
    """Random members of every kind with paths and link targets built from `..`, `/`,
    absolute and plain segments: extraction either succeeds with everything inside the
    folder, or is a ClientError; nothing ever appears outside."""
    with tempfile.TemporaryDirectory() as box:
        box = Path(box)
        target = box / "target" / "inner"
        target.mkdir(parents=True)
        made = []
        for kind, name, link in members:
            data = b"data" if kind == tarfile.REGTYPE else None
            made.append((_member("/".join(name), kind, "/".join(link)), data))
        _tarball(box / "model.tar.gz", *made)
        try:
            warm_start.extract_archive(box / "model.tar.gz", target)
            extracted = True
        except ClientError:
            extracted = False  # (the caller removes the folder)
        assert sorted(p.name for p in box.iterdir()) == ["model.tar.gz", "target"]
        assert [p.name for p in (box / "target").iterdir()] == ["inner"]
        for path in target.rglob("*") if extracted else ():
            resolved = os.path.realpath(path)
            assert os.path.commonpath([resolved, str(target)]) == str(target), path


def _model_channel(tmp_path):
    """A model channel holding an artifact's file names (the content is not read here)."""
    channel = tmp_path / "model"
    channel.mkdir()
    for name in (MODEL_INFO_FILE, SYMBOL_FILE, PARAMS_FILE):
        (channel / name).write_text("{}")
    (tmp_path / "outside.params").write_text("root:x:0:0:SECRET")
    return channel


@pytest.mark.parametrize("name", [MODEL_INFO_FILE, PARAMS_FILE])
def test_a_model_channel_file_linking_outside_is_refused_by_name(tmp_path, name):
    """Issue "Trust boundaries" item 4: the model channel for warm start stays inside too."""
    channel = _model_channel(tmp_path)
    (channel / name).unlink()
    (channel / name).symlink_to(tmp_path / "outside.params")
    with pytest.raises(ClientError) as refused, warm_start.located_artifact(channel):
        pass
    assert str(refused.value) == (
        f"The model channel's file model/{name} is a symbolic link, or lies under one, that "
        f"leads outside the model channel ({channel}); copy the file into the channel instead "
        f"of linking to it.")


def test_a_fifo_for_model_tar_gz_is_refused_not_opened(tmp_path):
    channel = tmp_path / "model"
    channel.mkdir()
    os.mkfifo(channel / "model.tar.gz")
    with deadline(10), pytest.raises(ClientError, match=r"^The model channel's file "
                                                        r"model/model.tar.gz is a FIFO"):
        with warm_start.located_artifact(channel):
            pass


def test_model_channel_links_that_stay_inside_are_followed(tmp_path):
    channel = _model_channel(tmp_path)
    (channel / "kept").mkdir()
    (channel / PARAMS_FILE).rename(channel / "kept" / "weights")
    (channel / PARAMS_FILE).symlink_to("kept/weights")
    with warm_start.located_artifact(channel) as found:
        assert found == channel
