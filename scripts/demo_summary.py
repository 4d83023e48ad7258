"""Print the held-out mAP of the model `train` exported (its best epoch on the validation
channel, which the demo draws with another seed than the training images).

Usage: python scripts/demo_summary.py OUTPUT_DATA/metrics.jsonl
"""

import json
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line]
    scored = [row for row in rows if row.get("validation_map") is not None]
    if not scored:
        sys.exit(f"error: {sys.argv[1]} has no validation mAP")
    best = max(scored, key=lambda row: row["validation_map"])
    curve = ", ".join(f"{row['validation_map']:.2f}" for row in scored)
    print(f"held-out mAP {best['validation_map']:.4f} (epoch {best['epoch']} of {len(rows)}, "
          f"the exported model; per epoch: {curve})")


if __name__ == "__main__":
    main()
