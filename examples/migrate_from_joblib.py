"""A joblib.Memory script moved to fleche: each fleche line with the joblib line it replaces.

Run it with ``python examples/migrate_from_joblib.py`` (twice: the second run computes nothing
that is still stored). joblib is not needed; the comments show the original. The steps are those
of the migration page of the docs.
"""

from __future__ import annotations

import time

import numpy as np

from fleche import cache, fleche

# from joblib import Memory
# memory = Memory("./cachedir", verbose=0)
cache("./fleche-cache")

runs: list[str] = []


# @memory.cache
@fleche
def load_data(n: int, seed: int = 0) -> np.ndarray:
    runs.append("load_data")
    time.sleep(0.3)
    return np.random.default_rng(seed).normal(size=(n, 3))


# @memory.cache(ignore=["verbose"])
@fleche(ignore=["verbose"])
def fit(X: np.ndarray, alpha: float = 1.0, verbose: bool = False) -> np.ndarray:
    runs.append(f"fit(alpha={alpha})")
    time.sleep(0.3)
    return (X.mean(axis=0) * alpha).round(4)


def summarize(coefficients: np.ndarray) -> float:
    return float(np.abs(coefficients).sum())


# summary = memory.cache(summarize)
summary = fleche(summarize)


def main() -> None:
    start = time.perf_counter()
    X = load_data(1000, seed=1)
    for alpha in (0.1, 1.0):
        coefficients = fit(X, alpha=alpha, verbose=True)
        print(f"alpha={alpha}: coefficients {coefficients}, summary {summary(coefficients):.4f}")

    # fit.check_call_in_cache(X, alpha=0.1)
    print(f"stored: alpha=0.1 {fit.contains(X, alpha=0.1)}, alpha=5.0 {fit.contains(X, alpha=5.0)}")
    # fit.call_and_shelve(X, alpha=0.1).get()
    print(f"loaded without computing: {fit.load(X, alpha=0.1)}")
    # output, metadata = fit.call(X, alpha=1.0)
    output = fit.rerun(X, alpha=1.0)
    print(f"recomputed and stored again: {output}")
    # (no joblib equivalent) what is stored, as a table
    print(f"stored fits: {sorted(c.arguments['alpha'] for c in fit.query())}")
    # fit.clear()
    removed = fit.query(alpha=1.0).evict()
    print(f"evicted {removed} stored fit; alpha=1.0 stored: {fit.contains(X, alpha=1.0)}")
    print(f"bodies that ran: {', '.join(runs) or 'none'} ({time.perf_counter() - start:.2f} s)")


if __name__ == "__main__":
    main()
