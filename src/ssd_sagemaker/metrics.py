"""The metric lines SageMaker users scrape with MetricDefinitions (shapes of the built-in
Object Detection algorithm), the regexes that match them — one source for code and README —
and the per-epoch metrics files and curve in `/opt/ml/output/data`."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from ssd_sagemaker.storage import write_files

METRIC_DEFINITIONS: tuple[dict[str, str], ...] = (
    {"Name": "validation:mAP",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)"},
    {"Name": "train:cross_entropy",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ "
              r"train cross_entropy <loss>=\((\S+)\)"},
    {"Name": "train:smooth_l1",
     "Regex": r"#quality_metric: host=\S+, epoch=\S+, batch=\S+ "
              r"train smooth_l1 <loss>=\((\S+)\)"},
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
        """One line, through tqdm so that a progress bar on the terminal is redrawn below it
        instead of torn (without a bar, tqdm writes the line as it is)."""
        stream = self._stream or sys.stdout
        tqdm.write(line, file=stream)
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


EPOCH_FIELDS = ("epoch", "cross_entropy", "smooth_l1", "validation_map", "validation_map_area",
                "learning_rate", "images_per_second", "seconds")


METRICS_FILES = ("metrics.jsonl", "metrics.csv", "training_curve.png")


class EpochLog:
    """The per-epoch metrics of a run — the one owner of its history, saved in every
    checkpoint — and their files in `/opt/ml/output/data`: `metrics.jsonl`, `metrics.csv` and
    a training-curve PNG, rewritten after every epoch so a stopped job still has them, all
    three replaced together (a full disk keeps the previous ones and is a ClientError).
    `directory` None: rows are kept but no files written (hosts other than the master).
    Recording and writing are separate so that an epoch is checkpointed before its files are
    written: a full disk here then costs no trained epoch."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.rows: list[dict] = []

    def record(self, row: dict) -> None:
        self.rows.append({field: row.get(field) for field in EPOCH_FIELDS})

    def state_dict(self) -> list[dict]:
        return [dict(row) for row in self.rows]

    def load_state_dict(self, rows: list[dict]) -> None:
        self.rows = [dict(row) for row in rows]

    def write(self) -> None:
        if self.directory is None:
            return
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=EPOCH_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        contents = ("".join(json.dumps(r) + "\n" for r in self.rows).encode(),
                    table.getvalue().encode(), self._plot())
        write_files(self.directory, dict(zip(METRICS_FILES, contents)),
                    f"the per-epoch metrics ({', '.join(METRICS_FILES)})")

    def _plot(self) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        epochs = [r["epoch"] for r in self.rows]
        figure, (losses, scores) = pyplot.subplots(1, 2, figsize=(10, 4))
        losses.plot(epochs, [r["cross_entropy"] for r in self.rows], "o-", label="cross_entropy")
        losses.plot(epochs, [r["smooth_l1"] for r in self.rows], "o-", label="smooth_l1")
        losses.set(title="training loss", xlabel="epoch")
        losses.legend()
        maps = [(r["epoch"], r["validation_map"]) for r in self.rows
                if r["validation_map"] is not None]
        if maps:
            scores.plot(*zip(*maps), "o-", color="tab:green")
        scores.set(title="validation mAP", xlabel="epoch", ylim=(0, 1))
        figure.tight_layout()
        image = io.BytesIO()
        figure.savefig(image, format="png", dpi=80)
        pyplot.close(figure)
        return image.getvalue()
