"""How long the stack under this container gets fixes from its makers: one table, printed by
`selftest` (so a user sees it on the machine that will run the job) and explained in
docs/support-window.md."""

from __future__ import annotations

# (part, version here, upstream support)
SUPPORT_WINDOW: tuple[tuple[str, str, str], ...] = (
    ("Python", "3.11", "security fixes until 2027-10"),
    ("MXNet", "1.9.1", "retired to the Apache Attic in 2023: no upstream fixes"),
    ("GluonCV", "0.10.5.post0", "no longer developed"),
    ("NumPy", "1.23.5", "no further 1.23 releases (MXNet 1.9.1 needs < 1.24)"),
    ("CUDA", "11.2 (cuDNN 8)", "GPUs of compute capability 5.0-8.9; no H100/H200 (sm_90)"),
    ("SageMaker Python SDK", "v2", "v3 replaces Estimator; the examples use v2 in their own venv"),
)
PAGE = "docs/support-window.md"


def support_window_lines() -> list[str]:
    """The table as report lines, ending with where it is explained."""
    width = max(len(part) for part, _, _ in SUPPORT_WINDOW)
    return [f"  {part:<{width}}  {version}: {support}" for part, version, support in
            SUPPORT_WINDOW] + [f"  (what it means for your jobs: {PAGE})"]
