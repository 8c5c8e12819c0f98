"""The benchmark harness runs end to end and reports what it measured (never asserting timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside src/, not inside it

from benchmarks import report, tables  # noqa: E402
from benchmarks.modes import MODES  # noqa: E402
from benchmarks.runner import run_worker  # noqa: E402


@pytest.mark.slow
def test_smoke_run_writes_json_markdown_and_every_block(tmp_path):
    out, doc, png = tmp_path / "r.json", tmp_path / "perf.md", tmp_path / "img" / "w5.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--json",
            str(out),
            "--doc",
            str(doc),
            "--plot",
            str(png),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(out.read_text())
    meta = run["meta"]
    assert meta["mode"]["name"] == "smoke"
    assert meta["machine"]["cores"] >= 1
    assert meta["versions"]["python"] == sys.version.split()[0]
    assert meta["command"].startswith("python -m benchmarks --smoke")
    results = run["results"]
    # the in-memory subjects need nothing but fleche: they always produce figures
    for subject in ("fleche-memory", "lru_cache"):
        assert results["W1"][subject]["hit_us"]["median"] > 0, results["W1"][subject]
        assert results["W2"][subject]["miss_us"]["median"] > 0
        assert len(results["scale"][subject]["steps"]) == len(MODES["smoke"].scale)
    assert results["W3"]["fleche-memory"]["fraction_of_xxh3"] > 0
    assert results["floors"]["xxh3_128_s"]["median"] > 0
    assert results["mem-digest-C"]["added_rss"] >= 0
    assert "fleche" in results["imports"]
    # every other subject either ran or says why not: nothing is silently missing
    for task, by_subject in results.items():
        if task.startswith(("floors", "imports", "mem-digest")):
            continue
        for subject, node in by_subject.items():
            assert node.keys() - {"worker_s", "rss_at_start"}, (task, subject)
    assert {t["status"] for t in run["targets"]} <= {
        "PASS",
        "MISS",
        "PASS?",
        "MISS?",
        "not measured",
    }
    text = doc.read_text()
    for block in report.blocks(run, None):
        assert f"<!-- bench:{block} -->" in text
    assert "(block" not in text  # every marked block was generated
    assert "| fleche-memory |" in text
    assert "## W1" in done.stdout  # the tables are printed too


def test_document_keeps_the_text_outside_generated_blocks(tmp_path):
    doc = tmp_path / "perf.md"
    doc.write_text(
        "# Title\n\nhand-written\n\n<!-- bench:W1 -->\nold\n<!-- /bench:W1 -->\n\nmore\n"
    )
    report.write(doc, {"W1": "| new |"})
    assert doc.read_text() == (
        "# Title\n\nhand-written\n\n<!-- bench:W1 -->\n| new |\n<!-- /bench:W1 -->\n\nmore\n"
    )


def test_a_subject_that_cannot_run_is_reported_not_fatal(monkeypatch):
    # nothing listens on port 1: the backend is unavailable or fails; either way the run goes on
    monkeypatch.setenv("FLECHE_BENCH_REDIS_URL", "redis://127.0.0.1:1/0")
    result = run_worker("W1", "fleche-redis", MODES["smoke"])
    assert "unavailable" in result or "error" in result, result
    text = tables.latency({"W1": {"fleche-redis": result}}, "W1", "hit_us")
    assert "| fleche-redis | unavailable |" in text or "| fleche-redis | error |" in text


def test_targets_are_judged_from_a_run_of_w8_alone():
    # W8 steps time queries but no hits: the W5 verdicts say "not measured", nothing crashes
    from benchmarks import targets

    step = {"query_one_s": {"median": 0.001}, "expand_us": {"median": 20.0}}
    results = {"scale": {"fleche-sqlite": {"steps": [{"stored": 1000, **step},
                                                    {"stored": 10_000, **step}]}}}  # fmt: skip
    found = {(v["workload"], v["target"]): v for v in targets.verdicts(results)}
    hit_growth = next(v for (w, t), v in found.items() if w == "W5" and "within 1.5x" in t)
    assert hit_growth["status"].startswith("not measured") or "MISS" not in hit_growth["status"]
    query_growth = next(v for (w, t), v in found.items() if w == "W8" and "constant" in t)
    assert "sqlite 1.0x" in query_growth["measured"]


def test_peak_rss_of_a_child_is_its_own_not_its_parents():
    # ru_maxrss of a process started by subprocess includes its parent's memory from before the
    # exec; the benchmark's fresh processes must report their own peak (VmHWM)
    ballast = bytearray(300 * 1024 * 1024)  # resident: zero-filled page by page
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.timing import peak_rss;"
        " print(peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True
    )
    own, inherited = map(int, done.stdout.split())
    del ballast
    assert own < 100 * 1024 * 1024, own
    if sys.platform == "linux":
        assert inherited > 300 * 1024 * 1024  # what the benchmark would have reported


def test_the_open_store_memory_target_is_judged_at_its_size():
    from benchmarks import targets

    def verdict(stored: int, peak_mib: int) -> dict[str, str]:
        node = {"stored": stored, "peak_rss": peak_mib * 1024 * 1024}
        results = {"scale": {"fleche-embedded": {"steps": [], "open": node}}}
        found = targets.verdicts(results)
        return next(v for v in found if "holding" in v["target"])

    assert verdict(100_000, 45)["status"] == "PASS"
    assert verdict(100_000, 120)["status"] == "MISS"
    assert verdict(10_000, 45)["status"] == "PASS?"
    assert "45.0 MiB holding 100,000 calls" in verdict(100_000, 45)["measured"]
    assert targets.verdicts({})[0]["status"] == "not measured"


def test_scale_targets_are_judged_at_the_size_they_name_when_a_run_goes_further():
    # a --full run reaches 1,000,000 calls; the W5/W8 targets name 100,000 and are judged there
    from benchmarks import targets

    def step(stored: int, hit: float, query: float) -> dict[str, object]:
        return {"stored": stored, "hit_us": {"median": hit}, "query_one_s": {"median": query},
                "expand_us": {"median": 5.0}, "footprint": {"bytes": stored * 500}}  # fmt: skip

    steps = [step(1000, 10.0, 0.001), step(100_000, 12.0, 0.001), step(1_000_000, 40.0, 0.05)]
    results = {"scale": {"fleche-embedded": {"steps": steps}}}
    found = {(v["workload"], v["target"]): v for v in targets.verdicts(results)}
    hits = next(v for (w, t), v in found.items() if w == "W5" and "within 1.5x" in t)
    assert hits["measured"].startswith("embedded 1.2x") and hits["status"] == "PASS"
    query = next(v for (w, t), v in found.items() if w == "W8" and "< 10 ms" in t)
    assert query["status"] == "PASS" and "embedded 1.00 ms" in query["measured"]
    footprint = next(v for (w, t), v in found.items() if w == "W5" and "MiB" in t)
    assert "for 100,000 calls" in footprint["measured"]


def test_w1_runs_the_compared_subjects_in_several_processes_in_rounds() -> None:
    from benchmarks.runner import plan

    tasks = plan(MODES["quick"], ["W1"], ["fleche-embedded", "joblib", "diskcache"], [])
    assert [(t, s, p.get("process")) for t, s, p in tasks] == [
        ("W1", "fleche-embedded", None),
        ("W1", "joblib", None),
        ("W1", "diskcache", None),
        ("W1", "fleche-embedded", 2),
        ("W1", "diskcache", 2),
        ("W1", "fleche-embedded", 3),
        ("W1", "diskcache", 3),
    ]
    assert len(plan(MODES["smoke"], ["W1"], ["fleche-embedded", "diskcache"], [])) == 2


def test_w2_runs_its_compared_subjects_in_rounds_and_keeps_the_first_process_notes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import runner

    subjects = ["fleche-embedded", "joblib", "diskcache"]
    tasks = runner.plan(MODES["quick"], ["W2"], subjects, [])
    assert [(t, s, p.get("process")) for t, s, p in tasks] == [
        ("W2", "fleche-embedded", None),
        ("W2", "joblib", None),
        ("W2", "diskcache", None),
        ("W2", "fleche-embedded", 2),
        ("W2", "diskcache", 2),
        ("W2", "fleche-embedded", 3),
        ("W2", "diskcache", 3),
    ]
    medians = iter([300.0, 900.0, 200.0, 250.0, 150.0, 280.0, 170.0])

    def worker(task: str, subject: str, mode: object, params: dict | None = None) -> dict:
        result = {"miss_us": {"median": next(medians), "samples": []}, "worker_s": 1.0}
        if subject == "fleche-embedded" and not params:  # the first process measures the floor
            result["sql_floor"] = {"sql_us": {"median": 120.0}}
        if subject == "diskcache" and not params:  # and diskcache's miss with a per-key lock
            result["locked"] = {"miss_us": {"median": 400.0}}
        return result

    monkeypatch.setattr(runner, "run_worker", worker)
    found = runner.run(MODES["quick"], ["W2"], subjects)["W2"]
    assert found["fleche-embedded"]["miss_us"]["median"] == 280.0  # of 300, 250 and 280
    assert found["fleche-embedded"]["process_medians"] == [300.0, 250.0, 280.0]
    assert found["fleche-embedded"]["sql_floor"]["sql_us"]["median"] == 120.0
    assert found["diskcache"]["miss_us"]["median"] == 170.0  # of 200, 150 and 170
    assert found["diskcache"]["locked"]["miss_us"]["median"] == 400.0  # its first process's
    assert found["joblib"]["miss_us"]["median"] == 900.0  # no target compares it: one process


def test_the_median_process_counts_and_failed_ones_are_left_out() -> None:
    from benchmarks.runner import median_process

    def hit(us: float) -> dict:
        return {"hit_us": {"median": us, "samples": [us]}, "worker_s": 1.0}

    chosen = median_process([hit(30.0), {"error": "boom", "worker_s": 1.0}, hit(19.0), hit(21.0)],
                            "hit_us")  # fmt: skip
    assert chosen["hit_us"]["median"] == 21.0  # of 19, 21, 30
    assert chosen["process_medians"] == [30.0, 19.0, 21.0]
    assert chosen["worker_s"] == 4.0
    assert median_process([hit(5.0), hit(9.0)], "hit_us")["hit_us"]["median"] == 5.0
    assert median_process([{"error": "boom"}], "hit_us") == {"error": "boom"}


def test_w5_growth_divides_by_the_reference_hits_timed_in_turn_when_there_are() -> None:
    from benchmarks import targets

    def step(stored: int, hit: float, reference: float | None = None) -> dict[str, object]:
        node: dict[str, object] = {"stored": stored, "hit_us": {"median": hit}, "fill_s": 1.0}
        if reference is not None:
            node["reference_hit_us"] = {"median": reference}
        return node

    # the first step ran fast, the last slow all round: the reference timed beside it says so
    steps = [step(1000, 10.0), step(100_000, 24.0, 20.0)]
    results = {"scale": {"fleche-embedded": {"steps": steps}}}
    found = {(v["workload"], v["target"]): v for v in targets.verdicts(results)}
    hits = next(v for (w, t), v in found.items() if w == "W5" and "within 1.5x" in t)
    assert hits["measured"].startswith("embedded 1.2x") and hits["status"] == "PASS"
    assert "| 1.2x |" in tables.scale(results)
    steps[-1] = step(100_000, 24.0)  # without a reference: the first step's own hit
    found = {(v["workload"], v["target"]): v for v in targets.verdicts(results)}
    hits = next(v for (w, t), v in found.items() if w == "W5" and "within 1.5x" in t)
    assert hits["measured"].startswith("embedded 2.4x") and hits["status"] == "MISS"


def test_w8_growth_divides_by_the_reference_queries_timed_in_turn_when_there_are() -> None:
    from benchmarks import targets

    def step(stored: int, query: float, reference: float | None = None) -> dict[str, object]:
        node: dict[str, object] = {"stored": stored, "query_one_s": {"median": query},
                                   "query_group_s": {"median": 0.001}, "group_size": 10,
                                   "expand_us": {"median": 5.0}, "shrink_us": {"median": 20.0}}  # fmt: skip
        if reference is not None:
            node["reference_query_one_s"] = {"median": reference}
        return node

    def verdict(steps: list[dict[str, object]]) -> dict[str, str]:
        results = {"scale": {"fleche-sqlite": {"steps": steps}}}
        found = targets.verdicts(results)
        return next(v for v in found if v["workload"] == "W8" and "constant" in v["target"])

    # the first step's query ran fast, the last step's slow, its reference beside it as slow
    judged = verdict([step(1000, 50e-6), step(100_000, 115e-6, 100e-6)])
    assert judged["measured"].startswith("sqlite 1.1") and judged["status"] == "PASS"
    judged = verdict([step(1000, 50e-6), step(100_000, 115e-6)])  # no reference: the first's
    assert judged["measured"].startswith("sqlite 2.3x") and judged["status"] == "MISS"
    results = {"scale": {"fleche-sqlite": {"steps": [step(1000, 5e-5), step(10_000, 6e-5, 5e-5)]}}}
    assert "timed in turn with the same query on a second store" in tables.queries(results)
    results = {"scale": {"fleche-sqlite": {"steps": [step(1000, 5e-5), step(10_000, 6e-5)]}}}
    assert "second store" not in tables.queries(results)


@pytest.mark.slow
def test_w8_alone_times_its_queries_in_turn_with_a_reference_store(tmp_path: Path) -> None:
    result = run_worker("scale", "fleche-embedded", MODES["smoke"], {"workloads": ["W8"]},
                        workdir=tmp_path)  # fmt: skip
    first, *later = result["steps"]
    assert "reference_query_one_s" not in first and first["query_one_s"]["median"] > 0
    assert later
    for step in later:
        assert step["reference_query_one_s"]["median"] > 0 and step["query_one_s"]["median"] > 0
        assert "hit_us" not in step  # W8 alone times no hits
    assert not list(tmp_path.glob("*w5-reference*"))  # outside the subject's directory


@pytest.mark.slow
def test_w8_times_one_query_a_run_where_a_query_reads_every_record(tmp_path: Path) -> None:
    # file:// scans its records: a run of 20 queries in turn would take minutes at 100,000
    result = run_worker("scale", "fleche-file", MODES["smoke"], {"workloads": ["W8"]},
                        workdir=tmp_path)  # fmt: skip
    assert len(result["steps"]) > 1
    for step in result["steps"]:
        assert "reference_query_one_s" not in step and step["query_one_s"]["median"] > 0


@pytest.mark.slow
def test_w5_times_a_reference_store_in_turn_on_persistent_backends(tmp_path: Path) -> None:
    result = run_worker("scale", "fleche-embedded", MODES["smoke"], {"workloads": ["W5"]},
                        workdir=tmp_path)  # fmt: skip
    first, *later = result["steps"]
    assert "reference_hit_us" not in first and later
    for step in later:
        assert step["reference_hit_us"]["median"] > 0 and step["hit_us"]["median"] > 0
    assert not list(tmp_path.glob("*w5-reference*"))  # outside the subject's directory


def test_the_sql_floor_replays_real_misses_into_a_database_fleche_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the replay is faithful: the database it writes holds every recorded call, served as hits,
    # and it asks for the checkpoints the cache asked its checkpointer thread for
    from benchmarks import bodies, sqlfloor

    import fleche
    from fleche.config import cache_from_url
    from fleche.storage import embedded
    from fleche.storage.checkpointer import checkpointer

    monkeypatch.setattr(embedded, "CHECKPOINT_COMMITS", 10)
    setup, per_miss = sqlfloor._record(tmp_path / "recorded", 30)
    assert len(per_miss) == 30 and all(per_miss)
    # every statement of a miss, whether sent through the connection or the thread's cursor
    words = [sql.split()[:3] for _, sql, _ in per_miss[4] if sql != sqlfloor.CHECKPOINT]
    look = ["SELECT", "c.result,", "c.record,"]  # the look-up, then again under the key's lock
    assert words == [look, look, ["BEGIN", "IMMEDIATE"], ["INSERT", "INTO", "vals"],
                     ["INSERT", "INTO", "calls"], ["INSERT", "OR", "IGNORE"], ["COMMIT"]]  # fmt: skip
    asked = [s for miss in per_miss for s in miss if s[1] == sqlfloor.CHECKPOINT]
    assert len(asked) == 3  # 31 commits, one every 10
    connection = sqlfloor._new_database(tmp_path / "replayed")
    path = str(tmp_path / "replayed" / "fleche.db")
    done, cursor = checkpointer().done, connection.cursor()
    for statements in [setup, *per_miss]:
        sqlfloor._replay(cursor, statements, path)
    assert checkpointer().wait_idle(30) and checkpointer().done >= done + 1
    connection.close()
    cache = cache_from_url(f"embedded://{tmp_path / 'replayed'}")
    f = fleche.fleche(cache=cache)(bodies.small)
    assert [f(i, "miss") for i in range(30)] == [bodies.small(i, "miss") for i in range(30)]
    assert (cache.hits, cache.misses) == (30, 0)
    assert len(list(f.query(b="miss"))) == 31  # the argument index was replayed too (and -1)


def test_the_w2_target_and_table_give_the_embedded_sql_floor_and_diskcache_locked() -> None:
    from benchmarks import targets

    w2 = {"fleche-embedded": {"miss_us": {"median": 180.0},
                              "sql_floor": {"sql_us": {"median": 98.0}, "statements": 7}},
          "diskcache": {"miss_us": {"median": 100.0}, "locked": {"miss_us": {"median": 390.0}}}}  # fmt: skip
    found = next(v for v in targets.verdicts({"W2": w2}) if v["workload"] == "W2")
    assert found["measured"] == (
        "180 µs vs 100 µs (1.8x; its SQL alone 98.0 µs; diskcache with a per-key lock 390 µs)"
    )
    assert found["status"] == "MISS"  # judged against plain memoize: the lock is context only
    notes = tables.w2_notes({"W2": w2})
    assert "SQL alone: 98.0 µs a miss (its 7 statements" in notes
    assert "diskcache with a `diskcache.Lock` per key around its miss" in notes
    assert "W6): 390 µs a miss" in notes
    del w2["fleche-embedded"]["sql_floor"], w2["diskcache"]["locked"]
    assert tables.w2_notes({"W2": w2}) == ""
    found = next(v for v in targets.verdicts({"W2": w2}) if v["workload"] == "W2")
    assert found["measured"] == "180 µs vs 100 µs (1.8x)"


def test_diskcache_locked_computes_a_missing_call_once_among_threads(tmp_path: Path) -> None:
    """W2's context figure times a real per-key lock: a caller that misses while another
    computes the same key waits for it and reads what it stored; another key does not wait."""
    import threading

    from benchmarks.subjects import Diskcache

    subject = Diskcache(tmp_path)
    subject.open()
    runs: list[tuple[int, str]] = []
    computing, release, finished = threading.Event(), threading.Event(), threading.Event()

    def body(a: int, b: str) -> dict:
        runs.append((a, b))
        if a == 1:
            computing.set()
            release.wait(10)
            finished.set()
        return {"a": a, "b": b}

    f = subject.decorate_locked(body)
    results: list[dict] = []
    first = threading.Thread(target=lambda: results.append(f(1, "x")))
    first.start()
    assert computing.wait(10)
    second = threading.Thread(target=lambda: results.append(f(1, "x")))  # misses, then waits
    second.start()
    assert f(2, "y") == {"a": 2, "b": "y"}  # another key: not held by key 1's lock
    assert not finished.is_set()
    release.set()
    first.join(10)
    second.join(10)
    assert results == [{"a": 1, "b": "x"}] * 2
    assert sorted(runs) == [(1, "x"), (2, "y")]  # key 1 computed once
    assert f(1, "x") == {"a": 1, "b": "x"} and len(runs) == 2  # then a hit
    assert subject.decorate(body)(2, "y") == {"a": 2, "b": "y"}  # plain memoize keys apart
    assert len(runs) == 3
    subject.close()


def test_w4_runs_fewer_rounds_for_the_subjects_its_target_does_not_judge(tmp_path: Path) -> None:
    smoke = MODES["smoke"]
    assert smoke.reported_big_repeats < smoke.big_repeats
    judged = run_worker("W4", "fleche-embedded", smoke, workdir=tmp_path / "a")
    reported = run_worker("W4", "fleche-memory", smoke, workdir=tmp_path / "b")
    assert judged["runs"] == len(judged["store_s"]["samples"]) == smoke.big_repeats
    assert reported["runs"] == len(reported["load_s"]["samples"]) == smoke.reported_big_repeats
    text = tables.array_result({"W4": {"fleche-embedded": judged, "fleche-memory": reported}})
    assert text.splitlines()[0].endswith("| runs |")
    rows = {
        line.split("|")[1].strip(): line.split("|")[-2].strip() for line in text.splitlines()[2:]
    }
    assert rows == {"fleche-embedded": str(smoke.big_repeats),
                    "fleche-memory": str(smoke.reported_big_repeats)}  # fmt: skip
