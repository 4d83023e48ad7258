"""formats.py + channels.FORMATS: every channel declaration is claimed by at most one format,
and a new format is one object and one entry — channels.py reads it in File and Pipe mode and
lists it in its refusals without any other change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planting import image_records, start_pipe_writer, stream_bytes, write_records
from ssd_sagemaker.data import channels as channels_module
from ssd_sagemaker.data.channels import FORMATS, channel_format, read_training_data
from ssd_sagemaker.data.formats import recordio
from ssd_sagemaker.data.formats.protocol import ChannelRead, FileChannel, Parser
from ssd_sagemaker.environment import ChannelConfig, Paths
from ssd_sagemaker.errors import ClientError
from ssd_sagemaker.hyperparameters import parse_hyperparameters

MANIFEST = ("source-ref", "bounding-box")
NEW_TYPE = "application/x-detection-records"


class DetectionRecords:
    """A third-party format: RecordIO under its own ContentType and name."""

    kind = "detection records"
    streams = True
    declaration = f"{NEW_TYPE} (detection records)"
    readme_row = ("detection records", f"`ContentType` `{NEW_TYPE}`", "File or Pipe")

    def claims(self, config: ChannelConfig) -> bool:
        return config.content_type == NEW_TYPE

    def check(self, channels, name: str) -> None:
        pass

    def read_files(self, request: ChannelRead) -> FileChannel:
        channel = recordio.FORMAT.read_files(request)
        channel.report.kind = self.kind
        return channel

    def stream_parser(self, request: ChannelRead) -> Parser:
        return recordio.FORMAT.stream_parser(request)


class FileOnly(DetectionRecords):
    streams = False


def _hp(samples: int):
    return parse_hyperparameters({"num_classes": "3", "num_training_samples": str(samples)})


@pytest.mark.parametrize("config, kind", [
    (ChannelConfig("train", "application/x-recordio"), recordio.KIND),
    (ChannelConfig("train", "Application/X-RecordIO; charset=binary"), recordio.KIND),
    (ChannelConfig("train", "image/png"), "image + JSON"),
    (ChannelConfig("train", "application/x-image"), "image + JSON"),
    (ChannelConfig("train", "application/x-recordio", record_wrapper="RecordIO",
                   attribute_names=MANIFEST), "augmented manifest"),
    (ChannelConfig("train", "image/jpeg", record_wrapper="RecordIO",
                   attribute_names=MANIFEST), "augmented manifest"),
])
def test_one_format_claims_each_declaration(config: ChannelConfig, kind: str) -> None:
    claiming = [fmt for fmt in FORMATS if fmt.claims(config)]
    assert [fmt.kind for fmt in claiming] == [kind]
    channels = {"train": config, "train_annotation": ChannelConfig("train_annotation")}
    assert channel_format(channels, "train").kind == kind


def test_a_new_format_is_read_in_file_mode_from_one_entry(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(channels_module, "FORMATS", FORMATS + (DetectionRecords(),))
    paths = Paths(tmp_path)
    write_records(paths.channel_dir("train") / "train.rec", image_records(4))
    data = read_training_data(paths, {"train": ChannelConfig("train", NEW_TYPE)}, _hp(4))
    assert data.num_train_images == 4
    assert data.train.class_names == {}


def test_a_new_format_is_streamed_in_pipe_mode_from_one_entry(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setattr(channels_module, "FORMATS", FORMATS + (DetectionRecords(),))
    paths = Paths(tmp_path)
    paths.data_dir.mkdir(parents=True)
    writer = start_pipe_writer(paths.data_dir, "train", [stream_bytes(image_records(5))])
    try:
        data = read_training_data(paths, {"train": ChannelConfig("train", NEW_TYPE, "Pipe")},
                                  _hp(5))
        data.workers = 0
        assert data.train.kind == "detection records"
        samples = list(data.train.training_pass(5, 1, np.random.default_rng(0)))
        assert len(samples) == 5
    finally:
        writer.kill()
        writer.wait(timeout=30)


def test_refusals_list_the_registered_formats(monkeypatch) -> None:
    monkeypatch.setattr(channels_module, "FORMATS", FORMATS + (FileOnly(),))
    with pytest.raises(ClientError) as unknown:
        channel_format({"train": ChannelConfig("train", "text/csv")}, "train")
    assert f"or {NEW_TYPE} (detection records)." in str(unknown.value)
    assert "a 'train_annotation' channel of JSON files" in str(unknown.value)
    with pytest.raises(ClientError) as piped:
        channel_format({"train": ChannelConfig("train", NEW_TYPE, "Pipe")}, "train")
    message = str(piped.value)
    assert "detection records channels need File mode" in message
    assert "application/x-recordio (RecordIO) or an augmented manifest" in message


def test_docs_table_of_formats_is_the_registry(monkeypatch) -> None:
    """scripts/update_docs.py writes a row per entry of FORMATS, a new one included."""
    root = Path(__file__).resolve().parents[4]
    monkeypatch.syspath_prepend(str(root / "scripts"))
    import update_docs
    table = update_docs.formats_table()
    assert table in (root / "docs/data-channels.md").read_text()
    assert [line.split(" | ")[0] for line in table.splitlines()[2:]] == \
        [f"| {fmt.readme_row[0]}" for fmt in FORMATS]
    monkeypatch.setattr(update_docs, "FORMATS", FORMATS + (DetectionRecords(),))
    assert update_docs.formats_table().endswith(
        f"| detection records | `ContentType` `{NEW_TYPE}` | File or Pipe |")
