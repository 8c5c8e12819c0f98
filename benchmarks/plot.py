"""The W5 plot: hit latency against stored calls, one line per subject (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .fmt import get, median
from .subjects import ALL


def w5_latency(results: dict[str, Any], path: Path) -> str | None:
    """Write the plot to ``path``; the reason it was not drawn otherwise (None when drawn)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    series = []
    for subject in ALL:
        steps = get(results, "scale", subject, "steps") or []
        points = [(st["stored"], median(st, "hit_us")) for st in steps if median(st, "hit_us")]
        if points:
            series.append((subject, points))
    if not series:
        return "no W5 figures in this run"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for subject, points in series:
        xs, ys = zip(*points, strict=True)
        style = "-o" if subject.startswith("fleche-") else "--s"
        ax.plot(xs, ys, style, label=subject, markersize=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stored calls")
    ax.set_ylabel("hit latency (µs, median)")
    ax.set_title("W5: hit latency as the store grows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None
