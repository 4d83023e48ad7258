"""What a `train` run that resumed from the first of two checkpoints (the newest being unusable)
shows: its log says so, and the metrics hold epoch 1 again."""

import json
from pathlib import Path


def assert_resumed_from_the_first_checkpoint(base_dir: Path, stdout: str) -> None:
    """`train` under `base_dir` resumed from checkpoint-0001 at epoch 1 without a traceback."""
    assert "resumed from checkpoint checkpoint-0001" in stdout
    assert "starting at epoch 1" in stdout
    assert "Traceback" not in stdout
    rows = [json.loads(line) for line in
            (base_dir / "output/data/metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1, 2]  # epoch 1 again, from the intact one
