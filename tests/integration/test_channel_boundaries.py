"""`train` on channels holding symbolic links to /etc/passwd (issue "Trust boundaries" item 4):
the job ends with exit 1 and a failure file naming the link, and no byte of the target
(`root:x:0`, or its hex) reaches the failure file or the log. The job stops while reading its
channels, before any network is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import write_demo_job

HYPERPARAMETERS = {"num_classes": "3", "num_training_samples": "4", "base_network": "resnet-50",
                   "mini_batch_size": "2", "use_pretrained_model": "0"}
TARGET = Path("/etc/passwd")
PASSWD_BYTES = ("root:", "72 6f 6f 74")  # its first bytes as text and as a hex dump


@pytest.mark.skipif(not TARGET.read_text().startswith("root:"), reason="needs /etc/passwd")
@pytest.mark.parametrize("link", ["annotation", "image"])
def test_a_link_to_etc_passwd_fails_the_job_naming_the_link(run, tmp_path: Path,
                                                            link: str) -> None:
    write_demo_job(tmp_path, HYPERPARAMETERS, train_images=4, validation_images=2,
                   timeout=120)
    data = tmp_path / "input" / "data"
    if link == "annotation":
        (data / "train_annotation" / "evil.json").symlink_to(TARGET)
        culprit = "train_annotation/evil.json: is a symbolic link"
    else:
        (data / "train" / "evil.jpg").symlink_to(TARGET)
        document = json.loads((data / "train_annotation" / "train_0000.json").read_text())
        (data / "train_annotation" / "evil.json").write_text(
            json.dumps({**document, "file": "evil.jpg"}))
        culprit = "train_annotation/evil.json: \"file\" 'evil.jpg' is a symbolic link"
    done = run(tmp_path, "train", timeout=180)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    failure = (tmp_path / "output" / "failure").read_text(encoding="utf-8")
    assert failure.startswith("ClientError: The train channel has 1 invalid example(s) of ")
    assert f"{culprit}, or lies under one, that leads outside the " in failure, failure
    for text in PASSWD_BYTES:
        assert text not in failure and text not in done.stdout + done.stderr
    assert "Traceback" not in failure + done.stderr
