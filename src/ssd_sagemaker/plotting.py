"""Matplotlib without a display (the Agg backend, chosen before pyplot is imported), and a
figure as PNG bytes: the one way this package draws its plots (training curve, evaluation)."""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend: works on a server without a display."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def png_bytes(figure: Any, dpi: int = 100) -> bytes:
    """The figure as PNG, then closed (pyplot keeps every open figure otherwise)."""
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=dpi)
    pyplot().close(figure)
    return image.getvalue()
