"""Images refused while loading count against the channel's tolerance with the faults found
when it was read: each named once, the job stopped with the channel's ClientError beyond 1 %,
and the first pass's summary naming them."""

from __future__ import annotations

import logging

import pytest

from ssd_sagemaker.data.checks.report import ChannelReport
from ssd_sagemaker.data.loading.refusals import Refusals
from ssd_sagemaker.errors import ClientError

TRUNCATED = "image is truncated: the JPEG data ends inside the compressed image data"


def _refusals(found: int = 200) -> Refusals:
    report = ChannelReport("train", "image + JSON", found=found, used=found - 1)
    report.error("train_annotation/early.json", "annotation 0 has class_id 7")
    return Refusals(report)


def test_refusals_are_counted_once_and_summarised_after_the_first_pass(caplog) -> None:
    refusals = _refusals()
    with caplog.at_level(logging.INFO):
        refusals.add([("train/late.jpg", TRUNCATED)])
        refusals.add([("train/late.jpg", TRUNCATED)])  # met again in a later batch
        refusals.pass_done()
        refusals.pass_done()
    assert refusals.report.error_count == 2  # 2 of 200 are tolerated
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        f"train: train/late.jpg: {TRUNCATED}; left out",
        f"train: first pass done: 1 image(s) refused while loading and left out (2 invalid "
        f"example(s) of 200 in all; at most 1% are tolerated): train/late.jpg: {TRUNCATED}"]


def test_a_first_pass_without_refusals_says_so(caplog) -> None:
    with caplog.at_level(logging.INFO):
        _refusals().pass_done()
    assert caplog.messages == ["train: first pass done: no image refused while loading"]


def test_beyond_the_tolerance_the_channel_error_names_every_invalid_example() -> None:
    refusals = _refusals()
    refusals.add([("train/late.jpg", TRUNCATED)])
    with pytest.raises(ClientError) as caught:
        refusals.add([("train/later.png", "image is empty (0 bytes)")])
    assert str(caught.value).splitlines() == [
        "The train channel has 3 invalid example(s) of 200 (at most 1% are tolerated); fix or "
        "remove them:",
        "  train_annotation/early.json: annotation 0 has class_id 7",
        f"  train/late.jpg: {TRUNCATED}",
        "  train/later.png: image is empty (0 bytes)",
        "train (image + JSON): 200 found, 197 used, 0 skipped, 3 with errors"]
