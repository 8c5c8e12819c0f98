"""One measurement in a fresh process: ``python -m benchmarks.worker TASK SUBJECT [options]``.

Each library runs in a process of its own, so imports, caches and allocator state of one never
colour another's figures. The result is one JSON line on stdout, after ``RESULT_MARK``; a subject
that cannot run here reports ``{"unavailable": reason}`` instead, and a failure ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH-RESULT "
NO_SUBJECT = "-"


def _command(task: str, subject: Any, mode: Any, params: dict[str, Any]) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.worker", task, subject.name]
    command += ["--mode", mode.name, "--workdir", str(subject.workdir), "--child"]
    if getattr(subject, "url", None):
        command += ["--url", subject.url]
    return [*command, "--params", json.dumps(params)]


PYCACHE = Path(tempfile.gettempdir()) / "fleche-bench-pycache"


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The workers' environment: ``benchmarks`` importable, and bytecode cached (outside the
    source tree) even where ``PYTHONDONTWRITEBYTECODE`` is set, as an installed package has it:
    otherwise every fresh process would compile fleche again and W7 would time the compiler."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # so ``-m benchmarks`` imports anywhere
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    env.update(extra or {})
    return env


def start_child(task: str, subject: Any, mode: Any, params: dict[str, Any],
                env: dict[str, str] | None = None) -> subprocess.Popen[str]:  # fmt: skip
    """Start a child worker on the same subject and store (it never drops the store)."""
    return subprocess.Popen(
        _command(task, subject, mode, params),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(env),
    )


def parse_result(stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    """The worker's JSON result, or an ``error`` naming why there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    last = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
    return {"error": last[:300]}


def run_child(task: str, subject: Any, mode: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Run a child worker to completion (bounded by the mode's timeout) and return its result."""
    child = start_child(task, subject, mode, params)
    try:
        out, err = child.communicate(timeout=mode.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise TimeoutError(f"{task} child took more than {mode.timeout:.0f} s") from None
    result = parse_result(out, err, child.returncode)
    if "error" in result or "unavailable" in result:
        raise RuntimeError(f"{task} child: {result.get('error') or result.get('unavailable')}")
    return result


def dispatch(task: str, subject: Any, mode: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``task`` on ``subject`` (``None`` for the tasks that need none)."""
    from . import floors, memory, processes, profiling, scale, workloads

    if task == "floors":
        return floors.floors(mode, Path(params["workdir"]))
    if task == "imports":
        return processes.import_times(mode)
    if task == "mem-digest":
        return memory.digest_rss(mode, params.get("layout", "C"))
    tasks = {
        "W1": lambda: workloads.w1_hit(subject, mode),
        "W2": lambda: workloads.w2_miss(subject, mode, context="process" not in params),
        "W3": lambda: workloads.w3_array_argument(subject, mode),
        "W4": lambda: workloads.w4_array_result(subject, mode),
        "scale": lambda: scale.w5_scale(subject, mode, set(params["workloads"])),
        "W6": lambda: processes.w6_parent(subject, mode),
        "W6-child": lambda: processes.w6_child(subject, params["go"], params["keys"]),
        "W7": lambda: processes.w7_parent(subject, mode),
        "W7-child": lambda: processes.w7_child(subject, params["a"], params["opened_at"]),
        "mem-open": lambda: scale.mem_open(subject, mode, params["stored"]),
        "mem-store": lambda: memory.store_load_rss(subject, mode),
        "profile": lambda: profiling.profile_subject(subject, mode),
    }
    return tasks[task]()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("task")
    parser.add_argument("subject", help="a subject name, or - for tasks that need none")
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--url", default=None, help="the store to use (children share it)")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--child", action="store_true", help="never drop the shared store")
    args = parser.parse_args(argv)

    from .modes import MODES
    from .subjects import Unavailable, make
    from .timing import peak_rss

    mode = MODES[args.mode]
    params = {"workdir": args.workdir, **json.loads(args.params)}
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    subject = None
    result: dict[str, Any]
    rss_at_start = peak_rss()
    try:
        params["opened_at"] = time.perf_counter()  # W7 counts from here: the library's import
        if args.subject != NO_SUBJECT:
            subject = make(args.subject, workdir, args.url, **params.get("options", {}))
        result = dispatch(args.task, subject, mode, params)
        result["rss_at_start"] = rss_at_start
    except Unavailable as e:
        result = {"unavailable": str(e)}
    except Exception as e:
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
    finally:
        if subject is not None and not args.child:
            try:
                subject.close()
            except Exception as e:
                print(f"cleanup of {args.subject} failed: {e}", file=sys.stderr)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
