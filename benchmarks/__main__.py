"""Run the benchmarks: ``python -m benchmarks [--full | --smoke] [--only W1,W3]``.

A complete run (quick or full) writes ``benchmarks/results/latest.json`` and the generated blocks
of ``docs/performance.md`` with the W5 plot. A partial run (``--only``, ``--subjects``, ``--smoke``)
writes ``benchmarks/results/partial.json`` and prints its tables, leaving the document alone unless
``--doc`` names one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

from . import machine, plot, report, runner
from .modes import MODES
from .subjects import ALL
from .targets import verdicts

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="100,000 stored calls and more repeats")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, a few subjects (seconds)")
    parser.add_argument(
        "--only", help=f"comma-separated workloads among {','.join(runner.WORKLOADS)}"
    )
    parser.add_argument("--subjects", help=f"comma-separated subjects among {','.join(ALL)}")
    parser.add_argument("--json", type=Path, help="where to write the results (JSON)")
    parser.add_argument("--doc", type=Path, help="the Markdown document to update")
    parser.add_argument("--plot", type=Path, help="where to draw the W5 plot (PNG)")
    return parser.parse_args(argv)


SMOKE_SUBJECTS = ("fleche-memory", "fleche-embedded", "lru_cache", "diskcache")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mode = MODES["full" if args.full else "smoke" if args.smoke else "quick"]
    workloads = args.only.split(",") if args.only else list(runner.WORKLOADS)
    unknown = set(workloads) - set(runner.WORKLOADS)
    subjects = args.subjects.split(",") if args.subjects else list(ALL)
    if args.smoke and not args.subjects:
        subjects = list(SMOKE_SUBJECTS)
    unknown |= set(subjects) - set(ALL)
    if unknown:
        print(f"unknown workloads or subjects: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    complete = not (args.only or args.subjects or args.smoke)
    json_path = args.json or RESULTS / ("latest.json" if complete else "partial.json")
    doc_path = args.doc or (ROOT / "docs" / "performance.md" if complete else None)
    plot_path = args.plot or (ROOT / "docs" / "img" / "w5_latency.png" if complete else None)

    from .services import server_versions

    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python -m benchmarks" + "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
        "mode": mode.as_dict(),
        "workloads": workloads,
        "subjects": subjects,
        "machine": machine.machine(),
        "versions": {**machine.versions(), **server_versions()},
    }
    began = time.perf_counter()
    results = runner.run(mode, workloads, subjects)
    meta["duration_s"] = time.perf_counter() - began
    meta["load_average_end"] = machine.load_average()
    run = {"meta": meta, "results": results, "targets": verdicts(results)}

    plot_ref = None
    if plot_path is not None:
        missing = plot.w5_latency(results, plot_path)
        if missing is None and doc_path is not None:
            plot_ref = _relative(plot_path, doc_path.parent)
        meta["plot"] = missing or str(plot_path)
    generated = report.blocks(run, plot_ref)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(run, indent=1) + "\n")
    if doc_path is not None:
        report.write(doc_path, generated)
    print(report.markdown(generated))
    print(
        f"results: {json_path}" + (f"; document: {doc_path}" if doc_path else ""), file=sys.stderr
    )
    return 0


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())


if __name__ == "__main__":
    sys.exit(main())
