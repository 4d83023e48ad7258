"""Regenerate the README's derived sections (hyperparameter table, channel formats,
MetricDefinitions, GPU instance types) from the code, so the documentation cannot drift.
Run: python scripts/update_readme.py"""

import json
import re
from pathlib import Path

from ssd_sagemaker.data.channels import FORMATS
from ssd_sagemaker.gpu_support import gpu_table
from ssd_sagemaker.hyperparameters import markdown_table
from ssd_sagemaker.metrics import METRIC_DEFINITIONS

README = Path(__file__).resolve().parents[1] / "README.md"


def _fill(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def formats_table() -> str:
    """The table of channel formats, a row per entry of `channels.FORMATS`."""
    rows = ["| format | declare the channel as | input mode |", "|---|---|---|"]
    return "\n".join(rows + ["| " + " | ".join(fmt.readme_row) + " |" for fmt in FORMATS])


def render(text: str) -> str:
    """The README text with its generated sections up to date."""
    text = _fill(text, "hyperparameters-table", markdown_table())
    text = _fill(text, "channel-formats", formats_table())
    text = _fill(text, "gpu-instance-types", gpu_table())
    definitions = json.dumps(list(METRIC_DEFINITIONS), indent=2)
    return _fill(text, "metric-definitions", f"```json\n{definitions}\n```")


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
