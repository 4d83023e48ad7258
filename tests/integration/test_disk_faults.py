"""A full disk, for real: small tmpfs mounts as the checkpoint folder, `model/`, `output/data`,
`output/` and the temporary folder, filled so that the next write fails. Training must end
with exit 1 and a ClientError naming the folder and the space needed, leave no half-written
file, and keep the previous checkpoint loadable. Needs root (mount); skipped otherwise."""

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import mxnet as mx
import pytest
from mxnet import gluon

from cli_runner import FLOAT32, run_cli, write_demo_job, write_hyperparameters
from resume_checks import assert_resumed_from_the_first_checkpoint
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.model.identity import NetworkIdentity
from ssd_sagemaker.model.network import build_network
from ssd_sagemaker.storage import write_files
from ssd_sagemaker.training import warm_start
from ssd_sagemaker.training.checkpoint import STATE_FILE, Checkpointer

BASE = {"num_classes": "3", "num_training_samples": "2", "epochs": "1", "mini_batch_size": "2",
        "use_pretrained_model": "0", "image_shape": "300", **FLOAT32}
FILLER = ".filler"
NEEDS = re.compile(r"it needs (\d+\.\d) (KB|MB), (\d+\.\d) (KB|MB) free")


@pytest.fixture
def tmpfs():
    """mount(folder, size): a tmpfs of `size` bytes at `folder`; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def mount(folder: Path, size: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def fill(folder: Path, leave: int) -> None:
    """Take all of `folder`'s free space but `leave` bytes."""
    free = shutil.disk_usage(folder).free
    with open(folder / FILLER, "wb") as handle:
        if free > leave:
            os.posix_fallocate(handle.fileno(), 0, free - leave)
    assert shutil.disk_usage(folder).free <= leave + 4096


def _demo(base, **hyperparameters):
    write_demo_job(base, dict(BASE, **hyperparameters), 2, 1)


def _needs(failure: str) -> tuple[float, float]:
    """The space the message says is needed and the space it says is free, in MB."""
    match = NEEDS.search(failure)
    assert match, failure
    return tuple(float(match.group(i)) / (1024 if match.group(i + 1) == "KB" else 1)
                 for i in (1, 3))


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != FILLER)


# --- fast: storage and extraction on a full tmpfs -------------------------------------------

def test_a_group_of_files_is_written_whole_or_not_at_all(tmp_path, tmpfs):
    folder = tmpfs(tmp_path / "small", 256 * 1024)
    write_files(folder, {"a.txt": b"old a", "b.txt": b"old b"}, "the test files")
    with pytest.raises(ClientError) as error:
        write_files(folder, {"a.txt": b"new a", "b.txt": os.urandom(400 * 1024)}, "the test files")
    message = str(error.value)
    assert message.startswith(f"No space left on the device of {folder} while writing the test "
                              f"files: it needs 400.0 KB, ")
    assert (folder / "a.txt").read_bytes() == b"old a"  # not replaced: b did not fit
    assert _files(folder) == ["a.txt", "b.txt"]  # no temporary file left behind


def test_extracting_the_model_channel_onto_a_full_disk_says_so(tmp_path, tmpfs, monkeypatch):
    import tempfile

    channel = tmp_path / "channel"
    channel.mkdir()
    member = tmp_path / "model_algo_1-0000.params"
    member.write_bytes(os.urandom(600 * 1024))
    with tarfile.open(channel / "model.tar.gz", "w:gz", compresslevel=1) as archive:
        archive.add(member, arcname=member.name)
    scratch = tmpfs(tmp_path / "tmp", 256 * 1024)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(ClientError) as error:
        with warm_start.located_artifact(channel):
            pass
    message = str(error.value)
    assert message.startswith(f"No space left on the device of {scratch} while writing the "
                              f"extracted model.tar.gz: it needs 600.0 KB, "), message
    assert _files(scratch) == []  # the partial extraction is removed


# --- slow: `train` end to end -------------------------------------------------------------

@pytest.mark.slow
def test_full_checkpoint_folder_fails_clearly_and_keeps_the_previous_checkpoint(tmp_path, tmpfs):
    _demo(tmp_path)
    checkpoints = tmpfs(tmp_path / "checkpoints", 512 * 1024 * 1024)
    first = run_cli(tmp_path, "train")
    assert first.returncode == 0, first.stdout[-3000:]
    state = json.loads((checkpoints / STATE_FILE).read_text())
    assert state["params_file"] == "checkpoint-0001.params"
    checkpoint_mb = sum(f["bytes"] for f in state["files"].values()) / 2**20
    before = {name: (checkpoints / name).read_bytes() for name in _files(checkpoints)}

    fill(checkpoints, leave=8 * 2**20)
    write_hyperparameters(tmp_path, dict(BASE, epochs="2"))
    second = run_cli(tmp_path, "train")
    assert second.returncode == 1, second.stdout[-3000:]
    assert "resumed from checkpoint checkpoint-0001" in second.stdout
    failure = (tmp_path / "output/failure").read_text()
    assert failure.startswith(f"ClientError: No space left on the device of {checkpoints} "
                              f"while writing "), failure
    assert "Traceback" not in failure and "Traceback" not in second.stdout
    # What did not fit is the best weights or the checkpoint: each at least the weights.
    needed, free = _needs(failure)
    assert needed >= checkpoint_mb / 3 and free <= 8.1, (failure, checkpoint_mb)

    # The previous checkpoint is untouched and still the one a resumed run takes.
    assert {name: (checkpoints / name).read_bytes() for name in _files(checkpoints)} == before
    (checkpoints / FILLER).unlink()
    network = NetworkIdentity.from_json(state["network"])
    assert network.classes is not None
    net = build_network(network.base_network, network.image_shape, list(network.classes))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001,
                                                         "momentum": 0.9})
    resumed = Checkpointer(checkpoints).resume(net, trainer, network, [mx.cpu()])
    assert (resumed.sequence, resumed.next_epoch) == (1, 1)


@pytest.mark.slow
def test_full_output_data_fails_clearly_and_keeps_the_previous_metrics(tmp_path, tmpfs):
    _demo(tmp_path)
    data = tmpfs(tmp_path / "output/data", 256 * 1024)  # the results plot is ~45 KB
    (data / "metrics.jsonl").write_text('{"epoch": 0, "note": "an earlier run"}\n')
    fill(data, leave=8 * 1024)  # room for the .jsonl and .csv, not the curve's PNG
    result = run_cli(tmp_path, "train")
    assert result.returncode == 1, result.stdout[-3000:]
    failure = (tmp_path / "output/failure").read_text()  # output/ itself has room
    assert failure.startswith(f"ClientError: No space left on the device of {data} while "
                              f"writing the per-epoch metrics (metrics.jsonl, metrics.csv, "
                              f"training_curve.png): it needs "), failure
    needed, free = _needs(failure)
    assert free <= 8.1 / 1024 < needed < 1
    assert _files(data) == ["metrics.jsonl"]
    assert (data / "metrics.jsonl").read_text() == '{"epoch": 0, "note": "an earlier run"}\n'
    # The epoch was checkpointed before its metrics files were tried: nothing trained is lost,
    # and its row is in the checkpoint's history for the files of the next run.
    state = json.loads((tmp_path / "checkpoints" / STATE_FILE).read_text())
    assert state["next_epoch"] == 1 and [row["epoch"] for row in state["history"]] == [0]
    assert (tmp_path / "checkpoints" / state["params_file"]).is_file()
    (data / FILLER).unlink()  # space again: the resumed run writes the epoch's files
    again = run_cli(tmp_path, "train")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "resumed from checkpoint checkpoint-0001" in again.stdout
    assert [json.loads(line)["epoch"] for line in
            (data / "metrics.jsonl").read_text().splitlines()] == [0]


@pytest.mark.slow
def test_full_model_folder_fails_clearly_and_leaves_no_partial_artifact(tmp_path, tmpfs):
    _demo(tmp_path)
    model = tmpfs(tmp_path / "model", 1024 * 1024)
    result = run_cli(tmp_path, "train")
    assert result.returncode == 1, result.stdout[-3000:]
    failure = (tmp_path / "output/failure").read_text()
    assert failure.startswith(f"ClientError: No space left on the device of {model} while "
                              f"writing the model artifact: it needs "), failure
    assert _needs(failure)[0] > 50  # the exported VGG-16 SSD weights
    assert _files(model) == []
    # Training itself is safe: its last checkpoint is there for a run with more space.
    state = json.loads((tmp_path / "checkpoints" / STATE_FILE).read_text())
    assert state["next_epoch"] == 1


@pytest.mark.slow
def test_full_output_folder_loses_only_the_failure_file_and_says_so(tmp_path, tmpfs):
    _demo(tmp_path)
    output = tmpfs(tmp_path / "output", 64 * 1024)
    fill(output, leave=0)
    result = run_cli(tmp_path, "train")
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"ClientError: No space left on the device of {output / 'data'} while writing " \
           f"the per-epoch metrics" in result.stdout
    assert f"could not write {output / 'failure'}: [Errno 28] No space left on device" \
        in result.stdout
    assert "Traceback" not in result.stdout
    assert not (output / "failure").exists()


@pytest.mark.slow
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """An interrupted copy from S3: the newest checkpoint's weights are cut short."""
    _demo(tmp_path, epochs="2")
    first = run_cli(tmp_path, "train")
    assert first.returncode == 0, first.stdout[-3000:]
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*.json")) == [
        "checkpoint-0001.json", "checkpoint-0002.json"]
    newest = checkpoints / "checkpoint-0002.params"
    size = newest.stat().st_size
    newest.write_bytes(newest.read_bytes()[: size // 3])
    (tmp_path / "output/success").unlink()

    write_hyperparameters(tmp_path, dict(BASE, epochs="3"))
    second = run_cli(tmp_path, "train")
    assert second.returncode == 0, second.stdout[-3000:]
    assert (f"checkpoint checkpoint-0002 in {checkpoints} is damaged: checkpoint-0002.params "
            f"has {size // 3} bytes, {size} were written (truncated, e.g. an interrupted copy)"
            ) in second.stdout
    assert "resumed from an earlier checkpoint than the newest" in second.stdout
    assert_resumed_from_the_first_checkpoint(tmp_path, second.stdout)
    assert (tmp_path / "output/success").exists()
