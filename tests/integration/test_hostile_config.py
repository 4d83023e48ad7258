"""`train` as SageMaker runs it, on hostile config files: exit 1, a failure file that names the
file or key and is never empty nor a traceback, and no traceback on stderr. Each job stops
while validating its configuration, before any data is read or network built."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

GOOD = {"num_classes": "2", "num_training_samples": "4"}
_WHAT = {"hyperparameters.json": "hyperparameters", "inputdataconfig.json": "input data config",
         "resourceconfig.json": "resource config"}


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# case -> (file under input/config, its bytes, text the failure file must hold)
CASES = {
    "latin-1": ("hyperparameters.json", '{"num_classes": "2", "x": "é"}'.encode("latin-1"),
                "hyperparameters.json is not UTF-8 text: byte 0xe9 at offset 27"),
    "utf-16": ("hyperparameters.json", json.dumps(GOOD).encode("utf-16"),
               "hyperparameters.json is UTF-16 text"),
    "nested-100000": ("hyperparameters.json", b"[" * 100_000 + b"]" * 100_000,
                      "hyperparameters.json is nested more than 32 levels deep"),
    "5000-digit": ("inputdataconfig.json", b'{"train": {"n": ' + b"7" * 5000 + b"}}",
                   "inputdataconfig.json holds an integer of more than 4300 digits"),
    "empty-num-classes": ("hyperparameters.json", _json({**GOOD, "num_classes": ""}),
                          "num_classes: required, but not given (given '')"),
    "null-num-training-samples": ("hyperparameters.json",
                                  _json({**GOOD, "num_training_samples": "null"}),
                                  "num_training_samples: required, but not given (given 'null')"),
    "num-classes-100000": ("hyperparameters.json", _json({**GOOD, "num_classes": "100000"}),
                           "num_classes: '100000' is invalid: must be an int in (0, 1000]"),
    "image-shape-100000": ("hyperparameters.json", _json({**GOOD, "image_shape": "100000"}),
                           "image_shape: '100000' is invalid: must be an int in [300, 1024]"),
    "lookahead-pattern": ("hyperparameters.json",
                          _json({**GOOD, "freeze_layer_pattern": "^(?!conv5)"}),
                          "freeze_layer_pattern: '^(?!conv5)' is invalid: must be a regular "
                          "expression in RE2 syntax"),
    "surrogate-key": ("hyperparameters.json", _json({**GOOD, "\udead": "1"}),
                      "hyperparameters.json holds the string '\\udead' with a lone surrogate"),
    "surrogate-channel": ("inputdataconfig.json", _json({"train\udead": {}}),
                          "inputdataconfig.json holds the string 'train\\udead' with a lone "
                          "surrogate"),
    "heterogeneous-cluster": (
        "resourceconfig.json",
        _json({"current_host": "algo-1", "hosts": ["algo-1", "algo-2"],
               "instance_groups": [
                   {"instance_group_name": "gpus", "instance_type": "ml.p3.2xlarge",
                    "hosts": ["algo-2"]},
                   {"instance_group_name": "cpus", "instance_type": "ml.c5.xlarge",
                    "hosts": ["algo-1"]}]}),
        "a heterogeneous cluster of 2 instance groups ('gpus' ('ml.p3.2xlarge': [\"algo-2\"]), "
        "'cpus' ('ml.c5.xlarge': [\"algo-1\"])) is not supported"),
}


def _assert_client_failure(done, base_dir: Path, expected: str) -> None:
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    failure = (base_dir / "output" / "failure").read_text(encoding="utf-8")
    assert failure.startswith("ClientError: ") and expected in failure, failure
    assert "Traceback" not in failure
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_config_ends_in_a_client_error(run, tmp_path: Path, case: str) -> None:
    name, data, expected = CASES[case]
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    if name != "hyperparameters.json":
        (config / "hyperparameters.json").write_bytes(_json(GOOD))
    (config / name).write_bytes(data)
    _assert_client_failure(run(tmp_path, "train", timeout=180), tmp_path, expected)


def test_channel_folder_whose_name_is_not_utf8_still_fills_the_failure_file(run, tmp_path):
    """Without inputdataconfig.json the channels are the folders; a name that is not UTF-8
    reaches Python as a lone surrogate (\\udcff) and used to leave the failure file empty."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_bytes(_json({**GOOD, "use_pretrained_model": "0"}))
    data = tmp_path / "input" / "data"
    data.mkdir()
    os.mkdir(os.path.join(os.fsencode(data), b"tr\xffin"))
    done = run(tmp_path, "train", timeout=180)
    _assert_client_failure(done, tmp_path, "The 'train' channel is required; the job has: "
                                           "tr\\udcffin")
    assert "tr\\udcffin" in done.stdout  # the log line, escaped


@pytest.mark.parametrize("name", ["hyperparameters.json", "inputdataconfig.json",
                                  "resourceconfig.json"])
def test_a_fifo_for_a_config_file_fails_within_seconds(run, tmp_path: Path, name: str) -> None:
    """Issue "Trust boundaries" item 5: the job blocked in open() until MaxRuntimeInSeconds."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    if name != "hyperparameters.json":
        (config / "hyperparameters.json").write_bytes(_json(GOOD))
    os.mkfifo(config / name)
    started = time.monotonic()
    done = run(tmp_path, "train", timeout=60)
    _assert_client_failure(done, tmp_path, f"The {_WHAT[name]} file {config / name} is a FIFO "
                                           f"(named pipe), not a regular file")
    assert time.monotonic() - started < 30


def test_a_2_mb_hyperparameters_file_is_refused_before_it_is_read(run, tmp_path: Path) -> None:
    """Issue "Trust boundaries" item 6: 1 million keys took 2 minutes and 930 MB."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    keys = {f"k{index:07d}": "1" for index in range(120_000)}
    (config / "hyperparameters.json").write_bytes(_json({**GOOD, **keys}))
    size = (config / "hyperparameters.json").stat().st_size
    assert size > 1_900_000
    started = time.monotonic()
    done = run(tmp_path, "train", timeout=60)
    _assert_client_failure(done, tmp_path, f"is {size:,} bytes, over the limit of 1,000,000 "
                                           f"bytes")
    assert time.monotonic() - started < 30
    assert len((tmp_path / "output" / "failure").read_bytes()) < 1024


def test_a_thousand_unknown_hyperparameters_list_twenty_and_count_the_rest(
        run, tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    keys = {f"unknown_{index}": "1" for index in range(1000)}
    (config / "hyperparameters.json").write_bytes(_json({**GOOD, **keys}))
    done = run(tmp_path, "train", timeout=120)
    _assert_client_failure(done, tmp_path, "Invalid hyperparameters (1,000 problems):\n")
    lines = (tmp_path / "output" / "failure").read_text().splitlines()
    assert lines[1:21] == [f"unknown_{index}: unknown hyperparameter (given '1'); see the "
                           f"hyperparameter table in the README" for index in range(20)]
    assert lines[21:] == ["... and 980 more problems"]
