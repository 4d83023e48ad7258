"""The metric lines SageMaker users scrape with MetricDefinitions (shapes of the built-in
Object Detection algorithm), and the regexes that match them — one source for code and README."""

from __future__ import annotations

import sys
from typing import TextIO

METRIC_DEFINITIONS: tuple[dict[str, str], ...] = (
    {"Name": "validation:mAP",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)"},
    {"Name": "train:cross_entropy",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train cross_entropy <loss>=\((\S+)\)"},
    {"Name": "train:smooth_l1",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ train smooth_l1 <loss>=\((\S+)\)"},
    {"Name": "train:throughput",
     "Regex": r"#throughput_metric: host=\S+, train throughput=(\S+) records/second"},
    {"Name": "train:progress", "Regex": r"#progress_metric: host=\S+, completed (\S+) %"},
)


class MetricReporter:
    """Writes metric lines for one host to a stream (stdout: CloudWatch → SageMaker)."""

    def __init__(self, host: str, stream: TextIO | None = None):
        self._host = host
        self._stream = stream

    def _emit(self, line: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def train_losses(self, epoch: int, batch: int, cross_entropy: float, smooth_l1: float) -> None:
        prefix = f"#quality_metric: host={self._host}, epoch={epoch}, batch={batch}"
        self._emit(f"{prefix} train cross_entropy <loss>=({cross_entropy:.6f})")
        self._emit(f"{prefix} train smooth_l1 <loss>=({smooth_l1:.6f})")

    def validation_map(self, epoch: int, score: float) -> None:
        self._emit(f"#quality_metric: host={self._host}, epoch={epoch}, "
                   f"validation mAP <score>=({score:.6f})")

    def throughput(self, records_per_second: float) -> None:
        self._emit(f"#throughput_metric: host={self._host}, "
                   f"train throughput={records_per_second:.3f} records/second")

    def progress(self, percent: float) -> None:
        self._emit(f"#progress_metric: host={self._host}, completed {percent:.0f} %")
