"""Regenerate the documentation's derived sections (hyperparameter table, channel formats,
MetricDefinitions, GPU instance types) and examples/metric_definitions.json from the code, so
the documentation cannot drift from it. Each section sits between `<!-- NAME:start -->` and
`<!-- NAME:end -->` in the file `SECTIONS` names; tests/unit/test_docs.py fails while any of
them is stale. Run: python scripts/update_docs.py"""

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from ssd_sagemaker.data.channels import FORMATS
from ssd_sagemaker.gpu_support import gpu_table
from ssd_sagemaker.hyperparameters import markdown_table
from ssd_sagemaker.metrics import METRIC_DEFINITIONS

ROOT = Path(__file__).resolve().parents[1]
METRIC_DEFINITIONS_FILE = ROOT / "examples/metric_definitions.json"
logger = logging.getLogger("update_docs")


def formats_table() -> str:
    """The table of channel formats, a row per entry of `channels.FORMATS`."""
    rows = ["| format | declare the channel as | input mode |", "|---|---|---|"]
    return "\n".join(rows + ["| " + " | ".join(fmt.readme_row) + " |" for fmt in FORMATS])


def metric_definitions_json() -> str:
    """METRIC_DEFINITIONS as the JSON list the SDK's `metric_definitions` and
    `CreateTrainingJob`'s `MetricDefinitions` take."""
    return json.dumps(list(METRIC_DEFINITIONS), indent=2) + "\n"


# file (relative to the repository) -> its generated sections: marker name -> body maker.
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/hyperparameters.md": {"hyperparameters-table": markdown_table},
    "docs/data-channels.md": {"channel-formats": formats_table},
    "docs/training.md": {"metric-definitions":
                         lambda: f"```json\n{metric_definitions_json()}```"},
    "docs/gpus.md": {"gpu-instance-types": gpu_table},
}


def _fill(text: str, marker: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {marker}:start --> ... <!-- {marker}:end --> section: "
                         "move the markers with the section, or SECTIONS with them")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def render(relative_path: str, text: str) -> str:
    """The text of the file `relative_path` with its generated sections up to date."""
    for marker, body in SECTIONS[relative_path].items():
        text = _fill(text, marker, body())
    return text


def rendered_files() -> dict[Path, str]:
    """Every generated file's path and its up-to-date text."""
    files = {ROOT / relative: render(relative, (ROOT / relative).read_text())
             for relative in SECTIONS}
    files[METRIC_DEFINITIONS_FILE] = metric_definitions_json()
    return files


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path, text in rendered_files().items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            logger.info("updated %s", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
