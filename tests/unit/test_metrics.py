"""metrics.py: every line the reporter writes is matched by its documented regex."""

import io
import re

from ssd_sagemaker.metrics import METRIC_DEFINITIONS, MetricReporter


def test_each_metric_line_matches_its_definition():
    stream = io.StringIO()
    reporter = MetricReporter("algo-1-x7k2q", stream)
    reporter.train_losses(3, 40, 0.7412, 0.2201)
    reporter.validation_map(3, 0.6123)
    reporter.throughput(51.25)
    reporter.progress(40)
    text = stream.getvalue()
    found = {d["Name"]: re.findall(d["Regex"], text) for d in METRIC_DEFINITIONS}
    assert found == {
        "validation:mAP": ["0.612300"],
        "train:cross_entropy": ["0.741200"],
        "train:smooth_l1": ["0.220100"],
        "train:throughput": ["51.250"],
        "train:progress": ["40"],
    }
    assert "#quality_metric: host=algo-1-x7k2q, epoch=3, batch=40 train cross_entropy" in text


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_metric_line_written_under_a_progress_bar_is_whole(monkeypatch):
    """On a terminal the bar (stderr) is cleared, the line written, the bar redrawn: the line
    never shares a row with the bar (it used to read `…5.95s/batch]#quality_metric: …`)."""
    from tqdm import tqdm

    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setattr("sys.stderr", terminal)
    bar = tqdm(total=10, desc="epoch 0", unit="batch", file=terminal)
    bar.update(3)
    MetricReporter("algo-1").validation_map(0, 0.5)
    bar.close()
    rows = re.split(r"[\r\n]", terminal.getvalue())
    line = "#quality_metric: host=algo-1, epoch=0, validation mAP <score>=(0.500000)"
    assert line in rows
    assert not [row for row in rows if "#quality_metric" in row and "batch" in row]
