"""A numpy/pandas pipeline whose stages are cached: change one parameter, only what depends on it runs.

Run it with ``python examples/data_pipeline.py``. Three stages (load, clean, fit) are cached
functions; arrays and data frames are digested by content (no copy of the array is made to hash
it). The cache lives in ``./.fleche`` in the working directory, so a second run of the script is
served entirely from disk. When a stage's output does not change (a stricter threshold that
removes no row), the next stage is served from the cache: keys are made from content.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from fleche import cache, fleche

ran: list[str] = []  # which stage bodies ran, to show what the cache saved


@fleche
def load(n_rows: int, seed: int) -> pd.DataFrame:
    """Stand-in for reading a large file: a frame of noisy measurements."""
    ran.append("load")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n_rows)
    y = 3.0 * x + 2.0 + rng.normal(0, 1, n_rows)
    y[rng.integers(0, n_rows, n_rows // 50)] = 1e3  # a few outliers
    return pd.DataFrame({"x": x, "y": y})


@fleche
def clean(raw: pd.DataFrame, max_y: float) -> pd.DataFrame:
    """Drop the outliers (the frame itself is the argument: digested by content)."""
    ran.append("clean")
    return raw[raw["y"] < max_y].reset_index(drop=True)


@fleche(version=1)
def fit(x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares polynomial fit on plain arrays."""
    ran.append("fit")
    time.sleep(0.2)  # pretend this is the expensive part
    return np.polyfit(x, y, degree)


def pipeline(max_y: float, degree: int) -> np.ndarray:
    raw = load(200_000, seed=42)
    data = clean(raw, max_y)
    return fit(data["x"].to_numpy(), data["y"].to_numpy(), degree)


def run(label: str, max_y: float, degree: int) -> None:
    ran.clear()
    start = time.perf_counter()
    coefficients = pipeline(max_y, degree)
    elapsed = time.perf_counter() - start
    shown = ", ".join(f"{c:.3f}" for c in coefficients)
    print(f"{label:<36} [{shown}]  ran: {', '.join(ran) or 'nothing'}  ({elapsed * 1e3:.0f} ms)")


def main() -> None:
    cache("./.fleche")  # persistent: a second run of this script computes nothing
    run("first run:", max_y=100.0, degree=1)
    run("same parameters again:", max_y=100.0, degree=1)
    run("another degree (only fit runs):", max_y=100.0, degree=2)
    run("threshold 50 (same rows, fit hits):", max_y=50.0, degree=1)
    counts = {f.__name__: f.query().count() for f in (load, clean, fit)}
    print(f"stored calls: {counts}")
    best = fit.query(degree=1).sorted(key=lambda call: abs(call.result[0] - 3.0)).take(1).only()
    print(f"slope closest to 3 among degree-1 fits: {best.result[0]:.4f}")


if __name__ == "__main__":
    main()
