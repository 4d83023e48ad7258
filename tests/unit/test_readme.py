"""The README's generated sections match the code (run scripts/update_readme.py to fix)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_generated_sections_are_current():
    spec = importlib.util.spec_from_file_location("update_readme",
                                                  ROOT / "scripts/update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "README.md").read_text()
    assert module.render(text) == text, "README is stale: run python scripts/update_readme.py"
    assert "| `learning_rate` |" in text and "train:cross_entropy" in text
    assert "| `ml.p5`, `ml.p5e`, `ml.p5en` | H100/H200 | 9.0 | **refused at start** |" in text


def test_the_inference_precision_table_has_a_row_per_value():
    from ssd_sagemaker.serving.config import INFERENCE_PRECISIONS

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Inference precision"):]
    section = section[:section.index("\n## ")]
    rows = [line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| `")]
    assert sorted(row.split()[0].strip("`") for row in rows) == sorted(INFERENCE_PRECISIONS)
    for line in section.splitlines():
        if line.startswith("| `"):
            assert line.count("|") == 5, f"a row of the precision table has not 4 cells: {line}"
