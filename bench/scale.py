"""Data at scale (issue 32): how the time before training's first batch, `validate-data`'s time
and the main process's memory grow with the number of images N, in both File-mode formats
(image + JSON, RecordIO), all in one run; prints a Markdown table and the extrapolation to COCO
(118k images).

The data: the demo generator's tiny JPEGs (256-400 x 224-320, 1-3 shapes) for the largest N,
written once under --work and hard-linked for the smaller ones; RecordIO by `convert`'s writer.
`train` is the real CLI (ResNet-50 SSD300 from scratch, batch 2, offline: no weights needed)
with `SSD_PROGRESS=bar`; the epoch bar drawn at `1/` is the first batch done, then SIGTERM
(training stops at the next batch boundary, saving a checkpoint). Not a test: run by hand,
`python bench/scale.py [--sizes 1000,4000,16000,64000] [--work /tmp/ssd-scale]`."""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ssd_sagemaker.data.channels import read_file_channel
from ssd_sagemaker.data.convert import ConvertedImage, Dataset, write_recordio
from ssd_sagemaker.data.synthetic import CLASS_NAMES, write_annotated_channel
from ssd_sagemaker.environment import Paths, read_channels

SRC = Path(__file__).resolve().parents[1] / "src"
COCO_IMAGES = 118_287
FORMATS = ("image+JSON", "RecordIO")
FIRST_BATCH_TIMEOUT = 1800.0
HYPERPARAMETERS = {"num_classes": str(len(CLASS_NAMES)), "epochs": "1", "mini_batch_size": "2",
                   "base_network": "resnet-50", "image_shape": "300",
                   "use_pretrained_model": "0"}
CHANNELS = {"image+JSON": {"train": {"ContentType": "image/jpeg"},
                           "train_annotation": {"ContentType": "image/jpeg"}},
            "RecordIO": {"train": {"ContentType": "application/x-recordio"}}}


def _pool(work: Path, count: int) -> tuple[Path, Path]:
    """`count` demo images and annotations (seed 0), written once and kept."""
    images, notes = work / "pool" / "images", work / "pool" / "annotations"
    existing = len(list(notes.glob("*.json"))) if notes.is_dir() else 0
    if existing < count:
        shutil.rmtree(work / "pool", ignore_errors=True)
        write_annotated_channel(images, notes, count, seed=0)
    return images, notes


def _job(work: Path, fmt: str, count: int, pool: tuple[Path, Path]) -> Path:
    """The /opt/ml tree of one job: the first `count` pool images as `fmt`, and its config."""
    base = work / f"{fmt}-{count}"
    data = base / "input" / "data"
    if not (base / "ready").exists():
        shutil.rmtree(base, ignore_errors=True)
        images, notes = pool
        chosen = sorted(notes.glob("*.json"))[:count]
        if fmt == "image+JSON":
            for note in chosen:
                for source, folder in ((note, "train_annotation"),
                                       (images / f"{note.stem}.jpg", "train")):
                    (data / folder).mkdir(parents=True, exist_ok=True)
                    os.link(source, data / folder / source.name)
        else:
            write_recordio(_dataset(chosen, images), data, "train")
        (base / "ready").touch()
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "inputdataconfig.json").write_text(json.dumps(CHANNELS[fmt]))
    (config / "hyperparameters.json").write_text(json.dumps(
        {**HYPERPARAMETERS, "num_training_samples": str(count)}))
    return base


def _dataset(notes: list[Path], images: Path) -> Dataset:
    """The demo annotations as `convert` holds a dataset, for its RecordIO writer."""
    dataset = Dataset(class_names=list(CLASS_NAMES))
    for note in notes:
        document = json.loads(note.read_text())
        size = document["image_size"][0]
        boxes = np.array([[a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]]
                          for a in document["annotations"]], dtype=np.float32).reshape(-1, 4)
        ids = np.array([a["class_id"] for a in document["annotations"]], dtype=np.int32)
        dataset.images.append(ConvertedImage(document["file"], images / document["file"],
                                             size["width"], size["height"], boxes, ids,
                                             np.zeros(len(ids), dtype=bool)))
    return dataset


def _environment(base: Path, progress: str) -> dict[str, str]:
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(base), MXNET_HOME=str(base / "mxnet_home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1", SSD_PROGRESS=progress)
    env.pop("TRAINING_JOB_NAME", None)
    return env


def first_batch(base: Path) -> tuple[float, float]:
    """(seconds from start until the data is read, until the first batch is trained)."""
    for leftover in ("checkpoints", "model", "output"):  # a checkpoint would be resumed
        shutil.rmtree(base / leftover, ignore_errors=True)
    started = time.perf_counter()
    job = subprocess.Popen([sys.executable, "-m", "ssd_sagemaker", "train"],
                           env=_environment(base, "bar"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)  # log lines and the bar, in order
    assert job.stdout is not None
    watch = selectors.DefaultSelector()
    watch.register(job.stdout, selectors.EVENT_READ)
    seen, read = b"", None
    try:
        while time.perf_counter() - started < FIRST_BATCH_TIMEOUT:
            if not watch.select(timeout=1.0):
                continue
            chunk = os.read(job.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"train ended before its first batch:\n"
                                   f"{seen[-3000:].decode(errors='replace')}")
            seen += chunk
            if read is None and b" SSD at " in seen:  # "training resnet-50 SSD at 300 px ..."
                read = time.perf_counter() - started
            if b"| 1/" in seen:  # the epoch bar after its first batch
                return read or 0.0, time.perf_counter() - started
        raise RuntimeError(f"no first batch in {FIRST_BATCH_TIMEOUT:.0f} s")
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.communicate(timeout=120)  # drained, so its last lines cannot block it
        except subprocess.TimeoutExpired:
            job.kill()
            job.wait()


def validate_data(base: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the command and its children, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssd_sagemaker", "validate-data"],
                          env=_environment(base, "lines"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"validate-data failed:\n{done.stdout[-3000:].decode()}")
    return wall, cpu, done.returncode


def memory_per_sample(base: Path) -> float:
    """Bytes the main process keeps per sample after reading the channel as training does
    (tracemalloc, in a fresh process so nothing earlier is counted)."""
    code = ("import sys, tracemalloc; from pathlib import Path; "
            "sys.path.insert(0, sys.argv[2]); import scale; "
            "print(scale.measure_memory(Path(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(base), str(Path(__file__).parent)],
                          env=_environment(base, "lines"), stdout=subprocess.PIPE, check=True,
                          text=True)
    return float(done.stdout.strip().splitlines()[-1])


def measure_memory(base: Path) -> float:
    """In the measuring process: traced bytes held by the read channel, per sample."""
    paths = Paths(base)
    channels = read_channels(paths)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    channel = read_file_channel(paths, channels, "train", len(CLASS_NAMES), 350,
                                defer_images=True)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / max(1, len(channel.samples))


def _slope(rows: list[dict], key: str) -> tuple[float, float]:
    """Least-squares (intercept, seconds per image) of `key` against N."""
    sizes = np.array([row["n"] for row in rows], dtype=float)
    values = np.array([row[key] for row in rows], dtype=float)
    if len(rows) < 2:
        return 0.0, float(values[0] / sizes[0])
    slope, intercept = np.polyfit(sizes, values, 1)
    return float(intercept), float(slope)


def table(rows: list[dict]) -> str:
    lines = ["| format | N | data read (s) | first batch (s) | validate-data wall (s) | "
             "CPU (s) | CPU / wall | memory per sample |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['format']} | {row['n']:,} | {row['read']:.1f} | "
                     f"{row['first']:.1f} | {row['wall']:.1f} | {row['cpu']:.1f} | "
                     f"{row['cpu'] / row['wall']:.2f} | {row['memory'] / 1024:.2f} KB |")
    for fmt in FORMATS:
        mine = [row for row in rows if row["format"] == fmt]
        if not mine:
            continue
        lines.append("")
        growth = mine[-1]["first"] / mine[0]["first"]
        lines.append(f"{fmt}: first batch at {mine[-1]['n']:,} is {growth:.2f}x the time at "
                     f"{mine[0]['n']:,} (goal <= 1.3x)")
        for key, what in (("first", "train start to first batch"),
                          ("wall", "validate-data wall")):
            intercept, slope = _slope(mine, key)
            lines.append(f"{fmt}: {what}: {1000 * slope:.2f} ms per image; COCO "
                         f"({COCO_IMAGES:,}): {intercept + slope * COCO_IMAGES:.0f} s")
        memory = mine[-1]["memory"]
        lines.append(f"{fmt}: main-process memory for COCO: "
                     f"{memory * COCO_IMAGES / 2 ** 20:.0f} MiB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,4000,16000,64000",
                        help="comma-separated numbers of images")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssd-scale"),
                        help="where the datasets are written and kept between runs")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    pool = _pool(args.work, sizes[-1])
    rows = []
    for fmt in args.formats.split(","):
        for count in sizes:
            base = _job(args.work, fmt, count, pool)
            read, first = first_batch(base)
            wall, cpu, _ = validate_data(base)
            memory = memory_per_sample(base)
            rows.append({"format": fmt, "n": count, "read": read, "first": first,
                         "wall": wall, "cpu": cpu, "memory": memory})
            print(f"{fmt} {count}: data read {read:.1f} s, first batch {first:.1f} s, "
                  f"validate-data {wall:.1f} s wall {cpu:.1f} s CPU, "
                  f"{memory:.0f} B per sample", flush=True)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores")
    print(table(rows))


if __name__ == "__main__":
    main()
