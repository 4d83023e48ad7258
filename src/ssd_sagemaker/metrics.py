"""The metric lines SageMaker users scrape with MetricDefinitions (shapes of the built-in
Object Detection algorithm), the regexes that match them — one source for code and README —
and the per-epoch metrics files and curve in `/opt/ml/output/data`."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from ssd_sagemaker.plotting import png_bytes, pyplot
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
                "validation_ap_per_class", "learning_rate", "images_per_second", "seconds")
# The per-class mapping is a JSON object in metrics.jsonl and one `ap_<class>` column per class
# in metrics.csv.
PER_CLASS_FIELD = "validation_ap_per_class"


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
        contents = ("".join(json.dumps(r) + "\n" for r in self.rows).encode(),
                    csv_table(self.rows).encode(), results_plot(self.rows))
        write_files(self.directory, dict(zip(METRICS_FILES, contents)),
                    f"the per-epoch metrics ({', '.join(METRICS_FILES)})")


def csv_table(rows: list[dict]) -> str:
    """metrics.csv: the scalar fields, then `ap_<class>` for every class any epoch scored."""
    classes = list(dict.fromkeys(name for row in rows for name in row.get(PER_CLASS_FIELD) or {}))
    fields = [f for f in EPOCH_FIELDS if f != PER_CLASS_FIELD] + [f"ap_{c}" for c in classes]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        per_class = row.get(PER_CLASS_FIELD) or {}
        writer.writerow({**{f: row.get(f) for f in fields if not f.startswith("ap_")},
                         **{f"ap_{c}": per_class.get(c) for c in classes}})
    return table.getvalue()


def results_plot(rows: list[dict]) -> bytes:
    """training_curve.png, 1200 x 700: the loss parts and their sum, the validation mAPs, the
    learning rate and the throughput per epoch; whole epochs on every x axis (one epoch gets
    an axis around it, not a degenerate one)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = [r["epoch"] for r in rows]
    figure, axes = plt.subplots(2, 2, figsize=(12, 7))
    losses, scores, rates, speed = axes.flat

    def series(axis: Any, field: str, label: str, style: str = "o-") -> None:
        points = [(r["epoch"], r[field]) for r in rows if r.get(field) is not None]
        if points:
            axis.plot(*zip(*points), style, label=label)

    series(losses, "cross_entropy", "cross_entropy (classes)")
    series(losses, "smooth_l1", "smooth_l1 (boxes)")
    total = [(r["epoch"], r["cross_entropy"] + r["smooth_l1"]) for r in rows
             if r.get("cross_entropy") is not None and r.get("smooth_l1") is not None]
    if total:
        losses.plot(*zip(*total), "k--", label="total")
    losses.set(title="training loss", ylabel="loss")
    values = [v for _, v in total if v > 0]
    if values and max(values) > 20 * min(values):  # the first epochs' losses dwarf the rest
        losses.set_yscale("log")
    series(scores, "validation_map", "mAP (VOC07 11-point)")
    series(scores, "validation_map_area", "mAP (area)", "s--")
    scores.set(title="validation mAP", ylim=(0, 1))
    series(rates, "learning_rate", "learning rate")
    rates.set(title="learning rate")
    series(speed, "images_per_second", "images/s")
    speed.set(title="training throughput", ylabel="images/s")
    low, high = (min(epochs), max(epochs)) if epochs else (0, 0)
    for axis in axes.flat:
        axis.set_xlim(low - 0.5, high + 0.5)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return png_bytes(figure)
