"""The targets of the performance issue, each judged from one run: PASS, MISS, or not measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .fmt import MIB, get, growth, median, sig, size, table, us
from .runner import FLECHE
from .scale import INDEXED_QUERIES
from .workloads import W4_JUDGED

PERSISTENT_FLECHE = [s for s in FLECHE if s != "fleche-memory"]
Verdict = tuple[str, str]  # (measured, PASS | MISS | not measured)
NOT_MEASURED = "not measured"


def _status(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _short(subject: str) -> str:
    return subject.removeprefix("fleche-")


def memory_hit(r: dict[str, Any]) -> Verdict:
    hit = median(r, "W1", "fleche-memory", "hit_us")
    return (NOT_MEASURED, NOT_MEASURED) if hit is None else (us(hit), _status(hit < 10))


def embedded_hit(r: dict[str, Any]) -> Verdict:
    mine, theirs = (median(r, "W1", s, "hit_us") for s in ("fleche-embedded", "diskcache"))
    if mine is None or theirs is None:
        return NOT_MEASURED, NOT_MEASURED
    return f"{us(mine)} vs {us(theirs)} ({sig(mine / theirs, 2)}x)", _status(mine <= theirs / 2)


def embedded_miss(r: dict[str, Any]) -> Verdict:
    mine, theirs = (median(r, "W2", s, "miss_us") for s in ("fleche-embedded", "diskcache"))
    if mine is None or theirs is None:
        return NOT_MEASURED, NOT_MEASURED
    floor = median(r, "W2", "fleche-embedded", "sql_floor", "sql_us")
    alone = f"; its SQL alone {us(floor)}" if floor is not None else ""
    locked = median(r, "W2", "diskcache", "locked", "miss_us")
    alone += f"; diskcache with a per-key lock {us(locked)}" if locked is not None else ""
    return f"{us(mine)} vs {us(theirs)} ({sig(mine / theirs, 2)}x{alone})", _status(mine <= theirs)


def _each(r: dict[str, Any], subjects: list[str], value: Callable[[str], float | None],
          show: Callable[[float], str], ok: Callable[[float], bool]) -> Verdict:  # fmt: skip
    """One verdict over several backends: every measured one must pass; the unmeasured are named."""
    parts, passed, missing = [], True, []
    for s in subjects:
        v = value(s)
        if v is None:
            missing.append(_short(s))
            continue
        parts.append(f"{_short(s)} {show(v)}")
        passed &= ok(v)
    if not parts:
        return NOT_MEASURED, NOT_MEASURED
    text = ", ".join(parts)
    if missing:
        text += f"; not measured: {', '.join(missing)}"
    return text, _status(passed)


def digest_speed(r: dict[str, Any]) -> Verdict:
    return _each(
        r, list(FLECHE), lambda s: get(r, "W3", s, "fraction_of_xxh3"),
        lambda v: f"{100 * v:.0f}%", lambda v: v >= 0.7,
    )  # fmt: skip


def digest_rss(r: dict[str, Any]) -> Verdict:
    parts, passed = [], True
    for layout in ("C", "F"):
        node = r.get(f"mem-digest-{layout}") or {}
        if "added_rss" in node:
            parts.append(f"{layout} order +{size(node['added_rss'])} over {size(node['bytes'])}")
            passed &= node["added_rss"] < 16 * MIB and node["bytes"] >= 1 << 30
    if not parts:
        return NOT_MEASURED, NOT_MEASURED
    return ", ".join(parts), _status(passed)


def store_load_rss(r: dict[str, Any]) -> Verdict:
    return _each(
        r, list(FLECHE), lambda s: get(r, "mem-store", s, "peak_over_size"),
        lambda v: f"{sig(v, 2)}x", lambda v: v < 2.5,
    )  # fmt: skip


def open_store_rss(r: dict[str, Any]) -> Verdict:
    node = get(r, "scale", "fleche-embedded", "open")
    if not node or "peak_rss" not in node:
        return NOT_MEASURED, NOT_MEASURED
    text = f"{size(node['peak_rss'])} holding {node['stored']:,} calls (1,000 hits)"
    status = _status(node["peak_rss"] < 100 * MIB)
    if node["stored"] < 100_000:  # judged below the size the target names
        status += "?"
    return text, status


def np_floor(r: dict[str, Any]) -> Verdict:
    def worst(s: str) -> float | None:
        node = get(r, "W4", s)
        if not node or "store_vs_np_save" not in node:
            return None
        return max(node["store_vs_np_save"], node["load_vs_np_load"])

    return _each(
        r, list(W4_JUDGED), worst,
        lambda v: f"worst of store/load {sig(v, 2)}x", lambda v: v <= 1.5,
    )  # fmt: skip


TARGET_SIZE = 100_000  # the stored calls the W5 and W8 targets name


def _steps(r: dict[str, Any], s: str) -> list[dict[str, Any]]:
    return get(r, "scale", s, "steps") or []


def _judged(r: dict[str, Any], s: str) -> list[dict[str, Any]]:
    """The steps a W5/W8 target is judged on: up to the size it names (a --full run also goes to
    1,000,000, which the tables and the plot show but the targets do not ask for)."""
    return [st for st in _steps(r, s) if st["stored"] <= TARGET_SIZE]


def flat_hits(r: dict[str, Any]) -> Verdict:
    def of(s: str) -> float | None:
        steps = [st for st in _judged(r, s) if "hit_us" in st]  # W8 alone times no hits
        if len(steps) < 2:
            return None
        return growth(steps[0], steps[-1], "hit_us")

    measured, status = _each(
        r, PERSISTENT_FLECHE, of, lambda v: f"{sig(v, 2)}x", lambda v: v <= 1.5
    )
    return _at_size(r, measured, status, TARGET_SIZE, PERSISTENT_FLECHE)


def small_footprint(r: dict[str, Any]) -> Verdict:
    steps = [st for st in _judged(r, "fleche-embedded") if st.get("footprint")]
    if not steps:
        return NOT_MEASURED, NOT_MEASURED
    stored, used = steps[-1]["stored"], steps[-1]["footprint"]["bytes"]
    if stored >= 100_000 or len(steps) < 2:
        at_100k = used / stored * 100_000
    else:  # the growth per call between the sizes measured (the WAL and the schema are fixed)
        first, first_used = steps[0]["stored"], steps[0]["footprint"]["bytes"]
        at_100k = first_used + (used - first_used) / (stored - first) * (100_000 - first)
    measured = f"{size(used)} for {stored:,} calls"
    if stored != 100_000:
        measured += f" (about {size(at_100k)} at 100,000 from the growth per call)"
    return _at_size(r, measured, _status(at_100k < 60 * MIB), TARGET_SIZE, ["fleche-embedded"])


SQL_LIKE = sorted(INDEXED_QUERIES, key=FLECHE.index)  # the backends with indexed queries


def _largest_step(r: dict[str, Any], s: str, field: str) -> float | None:
    steps = [st for st in _judged(r, s) if field in st]
    return median(steps[-1], field) if steps else None


def query_speed(r: dict[str, Any]) -> Verdict:
    measured, status = _each(
        r, SQL_LIKE, lambda s: _largest_step(r, s, "query_one_s"),
        lambda v: f"{sig(v * 1e3)} ms", lambda v: v < 0.01,
    )  # fmt: skip
    return _at_size(r, measured, status, TARGET_SIZE, SQL_LIKE)


def expand_speed(r: dict[str, Any]) -> Verdict:
    measured, status = _each(
        r, SQL_LIKE, lambda s: _largest_step(r, s, "expand_us"), us, lambda v: v < 1000
    )
    return _at_size(r, measured, status, TARGET_SIZE, SQL_LIKE)


def query_growth(r: dict[str, Any]) -> Verdict:
    def of(s: str) -> float | None:
        steps = [st for st in _judged(r, s) if "query_one_s" in st]
        if len(steps) < 2:
            return None
        return growth(steps[0], steps[-1], "query_one_s")

    measured, status = _each(r, SQL_LIKE, of, lambda v: f"{sig(v, 2)}x", lambda v: v <= 2)
    return _at_size(r, measured, status, TARGET_SIZE, SQL_LIKE)


def _at_size(r: dict[str, Any], measured: str, status: str, wanted: int,
             subjects: list[str]) -> Verdict:  # fmt: skip
    """Say so when the target names a size some of its backends did not reach (quick mode)."""
    reached = {s: max(st["stored"] for st in _steps(r, s)) for s in subjects if _steps(r, s)}
    short = {s: n for s, n in reached.items() if n < wanted}
    if status not in ("PASS", "MISS") or not short:
        return measured, status
    sizes = sorted(set(short.values()))
    if len(short) == len(reached) and len(sizes) == 1:
        where = f"at {sizes[0]:,}"
    else:
        where = "; ".join(
            ", ".join(_short(s) for s, n in short.items() if n == size) + f" at {size:,}"
            for size in sizes
        )
    return f"{measured} ({where}; the target is at {wanted:,}: run --full)", status + "?"


def single_flight(r: dict[str, Any]) -> Verdict:
    def runs(s: str) -> float | None:
        node = get(r, "W6", s)
        if not node or "body_runs" not in node:
            return None
        return -1 if node["hang"] else node["body_runs"]

    keys = next((n["keys"] for n in (r.get("W6") or {}).values() if "keys" in n), 40)
    return _each(
        r, PERSISTENT_FLECHE, runs,
        lambda v: "hung" if v < 0 else f"{v:.0f}", lambda v: v == keys,
    )  # fmt: skip


def import_time(r: dict[str, Any]) -> Verdict:
    node = get(r, "imports", "fleche")
    if not node or "import_s" not in node:
        return NOT_MEASURED, NOT_MEASURED
    heavy = node.get("heavy_modules") or []
    text = f"{sig(node['import_s'] * 1e3)} ms; heavy libraries loaded: {', '.join(heavy) or 'none'}"
    return text, _status(node["import_s"] < 0.1 and not heavy)


TARGETS: list[tuple[str, str, Callable[[dict[str, Any]], Verdict]]] = [
    ("W1", "memory hit < 10 µs", memory_hit),
    ("W1", "embedded hit at most half of diskcache's", embedded_hit),
    ("W2", "embedded miss + store no slower than diskcache's", embedded_miss),
    ("W3", "hit with a 100 MiB argument ≥ 70% of raw xxh3 speed (every backend)", digest_speed),
    ("memory", "digesting a 1 GiB array adds < 16 MiB RSS", digest_rss),
    ("memory", "storing + loading a 100 MiB result peaks < 2.5x its size", store_load_rss),
    ("memory", "a process holding a 100,000-call embedded cache peaks < 100 MiB", open_store_rss),
    ("W4", "100 MiB store and load within 1.5x of np.save / np.load (file, embedded)", np_floor),
    ("W5", "hit at 100,000 stored within 1.5x of at 1,000 (every persistent backend)", flat_hits),
    ("W5", "embedded: 100,000 small entries < 60 MiB on disk", small_footprint),
    ("W6", "body runs exactly once per key, no hang (every persistent backend)", single_flight),
    ("W7", "import fleche < 100 ms, no numpy/pandas/SQLAlchemy/driver imported", import_time),
    ("W8", "query by one argument < 10 ms at 100,000 calls (embedded, SQL, Redis)", query_speed),
    ("W8", "expand < 1 ms at 100,000 calls (embedded, SQL, Redis)", expand_speed),
    (
        "W8",
        "query time near-constant as the store grows (≤ 2x from the smallest size)",
        query_growth,
    ),
]


def verdicts(results: dict[str, Any]) -> list[dict[str, str]]:
    """Every target with its measured value and status (for the JSON and the table)."""
    found = []
    for workload, target, judge in TARGETS:
        measured, status = judge(results)
        found.append(
            {"workload": workload, "target": target, "measured": measured, "status": status}
        )
    return found


def targets_table(found: list[dict[str, str]]) -> str:
    rows = [[v["workload"], v["target"], v["measured"], f"**{v['status']}**"] for v in found]
    return table(["", "target", "measured", "status"], rows)
