"""Query an experiment sweep by arguments and tags.

Run it with ``python examples/experiment_sweep.py``. Two sweeps of a small "training" function run
under ``with tags(...)``; the cache then answers questions about them: how many runs, the best run
of a sweep, the runs with a given seed, a table of everything; finally one sweep is evicted.
"""

from __future__ import annotations

import math

from fleche import Runtime, cache, fleche, meta, tags


@fleche
def train(lr: float, depth: int, seed: int = 0) -> dict:
    """A stand-in for a training run: a deterministic 'validation loss'."""
    loss = (math.log10(lr) + 2.5) ** 2 + 0.1 * abs(depth - 4) + 0.01 * seed
    return {"loss": round(loss, 4), "epochs": 10 * depth}


def main() -> None:
    with cache("memory"), meta(Runtime()):  # Runtime records start, end and duration
        with tags(sweep="coarse", owner="ana"):
            for lr in (1e-4, 1e-3, 1e-2):
                for depth in (2, 4, 8):
                    train(lr, depth)
        with tags(sweep="seeds", owner="ben"):
            for seed in range(4):
                train(3e-3, 4, seed=seed)

        print(f"stored runs: {train.query().count()}")
        coarse = train.query(metadata={"tags": {"sweep": "coarse"}})
        print(f"runs of the coarse sweep: {coarse.count()}")

        best = coarse.sorted(key=lambda call: call.result["loss"]).take(1).only()
        print(f"best coarse run: {dict(best.arguments)} -> loss {best.result['loss']}")

        ben = train.query(depth=4, metadata={"tags": {"owner": "ben"}})
        by_seed = ben.sorted(key=lambda call: call.arguments["seed"])
        print(
            f"ben's runs at depth 4, (seed, loss): {[(c.arguments['seed'], c.result['loss']) for c in by_seed]}"
        )

        print(f"runs with lr=1e-3 (any depth, any seed): {train.query(lr=1e-3).count()}")
        latest = train.query().latest()
        print(
            f"latest run: {dict(latest.arguments)}, took {latest.metadata['runtime']['duration'] * 1e6:.0f} us"
        )

        table = train.query(seed=0).table()  # a pandas DataFrame when pandas is installed
        print("table of the seed=0 runs (first 4 rows):")
        rows = table if isinstance(table, list) else table.to_dict("records")
        for row in sorted(rows, key=lambda r: (r["lr"], r["depth"]))[:4]:
            print(f"  lr={row['lr']:<7g} depth={row['depth']} loss={row['result']['loss']}")

        removed = coarse.evict()
        print(f"evicted the coarse sweep: {removed} runs; {train.query().count()} left")
        print(f"train(1e-4, 2) still stored: {train.contains(1e-4, 2)}")


if __name__ == "__main__":
    main()
