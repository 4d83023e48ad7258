"""Pipe mode with real FIFOs fed by a separate writer process, as SageMaker does: a new FIFO per
pass, RecordIO and augmented-manifest streams, early close once an epoch has its samples,
repeats when a stream runs short, this worker's share of a replicated stream, and the waits and
errors around missing FIFOs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planting import image_records, manifest_records, start_pipe_writer, stream_bytes
from ssd_sagemaker.data.formats import manifest, recordio
from ssd_sagemaker.data.formats.protocol import ReadContext
from ssd_sagemaker.data.formats.recordio import unpack
from ssd_sagemaker.data.loading.pipe import PipeChannel, PipeSource
from ssd_sagemaker.data.loading.sharding import Shard
from ssd_sagemaker.errors import ClientError


def _recordio_source(directory: Path, keep=lambda index: True, declared: int = 0,
                     wait: float = 30) -> PipeSource:
    def parse(stream, source, report, names, keep):
        return recordio.parse_records(recordio.iter_records(stream, report=report, source=source),
                                      source, ReadContext(report, 3, 350), keep)
    return PipeSource(PipeChannel(directory, "train", wait), "RecordIO", parse, declared, keep)


def _ids(samples) -> list[int]:
    """Which record each sample came from (record id = index; payload identifies it)."""
    return [int(sample.class_ids[0]) for sample in samples]


def test_each_pass_reads_the_next_fifo(tmp_path: Path, writers) -> None:
    records = image_records(6)
    writers.append(start_pipe_writer(tmp_path, "train", [stream_bytes(records)] * 3, delay=0.3))
    source = _recordio_source(tmp_path)  # waits for train_0 and peeks into it
    images = {unpack(record)[1] for record in records}
    for epoch in range(3):
        samples = list(source.training_pass(None, 2, np.random.default_rng(epoch)))
        assert len(samples) == 6 and {s.image for s in samples} == images  # all, shuffled
        assert all(s.origin.startswith(f"train_{epoch} record ") for s in samples)
    assert writers[0].wait(timeout=10) == 0
    assert source.fifo.passes == 3


def test_short_stream_is_completed_to_whole_batches(tmp_path: Path, writers) -> None:
    writers.append(start_pipe_writer(tmp_path, "train", [stream_bytes(image_records(5))]))
    samples = list(_recordio_source(tmp_path).training_pass(None, 4, np.random.default_rng(0)))
    assert len(samples) == 8 and len({id(s) for s in samples}) <= 5


def test_fixed_count_closes_the_fifo_early_or_repeats(tmp_path: Path, writers) -> None:
    data = stream_bytes(image_records(40))
    writers.append(start_pipe_writer(tmp_path, "train", [data, data]))
    source = _recordio_source(tmp_path)
    assert len(list(source.training_pass(4, 2, np.random.default_rng(0)))) == 4
    assert len(list(source.training_pass(50, 2, np.random.default_rng(1)))) == 50
    assert writers[0].wait(timeout=10) == 0  # the writer saw the early close and went on


def test_replicated_stream_is_split_between_workers(tmp_path: Path, writers) -> None:
    records = image_records(7)
    shares = []
    for index in range(2):
        directory = tmp_path / f"worker{index}"
        directory.mkdir()
        writers.append(start_pipe_writer(directory, "train", [stream_bytes(records)]))
        source = _recordio_source(directory, keep=Shard(index, 2).owns)
        shares.append({s.image for s in source.validation_pass()})
    assert len(shares[0]) == 4 and len(shares[1]) == 3
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == {unpack(record)[1] for record in records}


def _manifest_source(tmp_path: Path, writers, channel: str, *args) -> PipeSource:
    """A Pipe-mode manifest channel of 4 lines (classes 0, 1, 2, 0) with its class-map."""
    writers.append(start_pipe_writer(tmp_path, channel, [stream_bytes(manifest_records(4))]))
    attributes = manifest.Attributes.from_names(
        channel, ["source-ref", "bounding-box", "bounding-box-metadata"])

    def parse(stream, source, report, names, keep):
        return manifest.parse_entries(recordio.iter_records(stream), attributes, source,
                                      ReadContext(report, 3, 350), names, keep)
    return PipeSource(PipeChannel(tmp_path, channel, 30), "augmented manifest", parse, *args)


def test_manifest_stream(tmp_path: Path, writers) -> None:
    source = _manifest_source(tmp_path, writers, "validation", 0)
    assert source.class_names == {0: "circle", 1: "square", 2: "triangle"}  # from the peek
    samples = list(source.validation_pass())
    assert _ids(samples) == [0, 1, 2, 0]
    assert [s.origin for s in samples] == [f"validation_0 line {i}" for i in range(4)]


def test_wrong_data_stops_at_start_up(tmp_path: Path, writers) -> None:
    bad = [recordio.pack([2, 5, 7, .1, .1, .5, .5], record[24 + 28:]) for record in
           image_records(3)]  # class 7 of 3
    writers.append(start_pipe_writer(tmp_path, "train", [stream_bytes(bad)]))
    with pytest.raises(ClientError) as caught:
        _recordio_source(tmp_path)
    message = str(caught.value)
    assert "The train channel has 3 invalid example(s) of 3" in message
    assert "train_0 record 0: object 0 has class_id 7.0" in message


def test_missing_fifo_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught:
        _recordio_source(tmp_path, wait=0.3)
    assert f"The Pipe-mode channel 'train' has no FIFO {tmp_path / 'train_0'} after 0 s" in \
        str(caught.value)


def test_every_worker_knows_the_names_of_the_whole_stream(tmp_path: Path, writers) -> None:
    """A replicated manifest stream split between 2 workers: class 1 ('square') appears on odd
    lines only, which worker 0 does not train on; worker 0 (which exports) still names it."""
    source = _manifest_source(tmp_path, writers, "train", 4, Shard(0, 2).owns)
    samples = list(source.validation_pass())
    assert _ids(samples) == [0, 2]  # lines 0 and 2: circle, triangle
    assert source.class_names == {0: "circle", 1: "square", 2: "triangle"}
