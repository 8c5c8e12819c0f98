"""The Markdown tables of one run: ratios to the peers first, then each workload's figures."""

from __future__ import annotations

from typing import Any

from .fmt import duration, get, growth, median, ratio, sig, size, table, us, why_missing
from .runner import APPLIES, FLECHE, NOT_APPLICABLE
from .subjects import ALL, PEERS


def _subjects(results: dict[str, Any], task: str, workload: str) -> list[str]:
    ran = results.get(task, {})
    return [s for s in ALL if s in ran and s in APPLIES[workload]]


def _largest(results: dict[str, Any], subject: str) -> dict[str, Any] | None:
    steps = get(results, "scale", subject, "steps")
    return steps[-1] if steps else None


def ratios(results: dict[str, Any]) -> str:
    """fleche on each backend divided by each peer, workload by workload (below 1: fleche wins)."""
    stored = None
    rows_spec = [
        ("W1 hit ÷ lru_cache", ("W1", "hit_us"), "lru_cache"),
        ("W1 hit ÷ cachetools", ("W1", "hit_us"), "cachetools"),
        ("W1 hit ÷ diskcache", ("W1", "hit_us"), "diskcache"),
        ("W1 hit ÷ joblib", ("W1", "hit_us"), "joblib"),
        ("W1 hit ÷ cachier", ("W1", "hit_us"), "cachier"),
        ("W2 miss+store ÷ diskcache", ("W2", "miss_us"), "diskcache"),
        ("W2 miss+store ÷ joblib", ("W2", "miss_us"), "joblib"),
        ("W3 hit, 100 MiB argument ÷ joblib", ("W3", "hit_s"), "joblib"),
        ("W3 hit, 100 MiB argument ÷ diskcache", ("W3", "hit_s"), "diskcache"),
        ("W4 store 100 MiB result ÷ joblib", ("W4", "store_s"), "joblib"),
        ("W4 load 100 MiB result ÷ joblib", ("W4", "load_s"), "joblib"),
        ("W4 load 100 MiB result ÷ diskcache", ("W4", "load_s"), "diskcache"),
    ]
    backends = [s for s in FLECHE if any(s in results.get(t, {}) for t in results)]
    rows = []
    for label, (task, field), peer in rows_spec:
        if task not in results:
            continue
        base = median(results, task, peer, field)
        row = [label]
        for s in backends:
            row.append(ratio(median(results, task, s, field), base))
        rows.append(row)
    if "scale" in results:
        for s in [*backends, "diskcache"]:
            step = _largest(results, s)
            if step:
                stored = step["stored"]
                break
        for label, key in (("hit", "hit_us"), ("bytes on disk", "footprint")):
            for peer in ("diskcache", "joblib"):
                theirs = _largest(results, peer)
                at = theirs["stored"] if theirs else stored  # compared at the peer's largest size
                row = [f"W5 {label} at {at:,} stored ÷ {peer}"]
                for s in backends:
                    mine, largest = _step_at(results, s, at), _largest(results, s)
                    if theirs and mine is None and largest:
                        row.append(f"— (filled to {largest['stored']:,})")
                        continue
                    row.append(ratio(*(_w5(x, key) for x in (mine, theirs))))
                rows.append(row)
    return table(["fleche ÷ peer", *[s.removeprefix("fleche-") for s in backends]], rows)


def _step_at(results: dict[str, Any], subject: str, stored: int) -> dict[str, Any] | None:
    steps = get(results, "scale", subject, "steps") or []
    return next((st for st in steps if st["stored"] == stored), None)


def _w5(step: dict[str, Any] | None, key: str) -> float | None:
    if step is None:
        return None
    if key == "footprint":
        return get(step, "footprint", "bytes")
    return median(step, key)


def _ratio_cells(results: dict[str, Any], task: str, subject: str, field: str,
                 peers: list[str]) -> list[str]:  # fmt: skip
    mine = median(results, task, subject, field)
    if not subject.startswith("fleche-"):
        return [""] * len(peers)
    return [ratio(mine, median(results, task, p, field)) for p in peers]


def latency(results: dict[str, Any], task: str, field: str) -> str:
    """W1/W2: microseconds per call and fleche ÷ each peer."""
    subjects = _subjects(results, task, task)
    peers = [p for p in PEERS if median(results, task, p, field) is not None]
    rows = []
    for s in subjects:
        value = median(results, task, s, field)
        cell = us(value) if value is not None else why_missing(results, task, s)
        rows.append([s, cell, *_ratio_cells(results, task, s, field, peers)])
    return table(["", "per call", *[f"÷ {p}" for p in peers]], rows)


def w2_notes(results: dict[str, Any]) -> str:
    """W2: the embedded default's SQL for a miss, replayed alone (``sqlfloor``), and diskcache's
    miss with a per-key lock (``Diskcache.decorate_locked``), as notes."""
    notes = ""
    node = get(results, "W2", "fleche-embedded", "sql_floor") or {}
    floor = median(node, "sql_us")
    if floor is not None:
        notes += (
            f"\n\nfleche-embedded's SQL alone: {us(floor)} a miss (its {node['statements']} "
            "statements, recorded from real misses and replayed on a new database without "
            "fleche's Python; `benchmarks/sqlfloor.py`)."
        )
    locked = median(results, "W2", "diskcache", "locked", "miss_us")
    if locked is not None:
        notes += (
            f"\n\ndiskcache with a `diskcache.Lock` per key around its miss (a look-up, the lock, "
            f"a look-up again, the store: the stampede protection fleche's persistent caches "
            f"have, W6): {us(locked)} a miss, in its first process."
        )
    return notes


def array_argument(results: dict[str, Any]) -> str:
    """W3: hit time, GB/s, and the share of raw xxh3's speed measured in the same process."""
    peers = [p for p in PEERS if median(results, "W3", p, "hit_s") is not None]
    rows = []
    for s in _subjects(results, "W3", "W3"):
        hit = median(results, "W3", s, "hit_s")
        if hit is None:
            rows.append([s, why_missing(results, "W3", s), "", "", *[""] * len(peers)])
            continue
        node = results["W3"][s]
        share = f"{100 * node['fraction_of_xxh3']:.0f}%"
        gbps = f"{sig(node['hit_gbps'], 2)} GB/s"
        rows.append(
            [s, duration(hit), gbps, share, *_ratio_cells(results, "W3", s, "hit_s", peers)]
        )
    header = ["", "hit", "speed", "of raw xxh3", *[f"÷ {p}" for p in peers]]
    return table(header, rows)


def array_result(results: dict[str, Any]) -> str:
    """W4: store and load of a large result against np.save / np.load in the same process, and
    the rounds each median is of (fewer for the subjects the target does not judge)."""
    rows = []
    for s in _subjects(results, "W4", "W4"):
        store = median(results, "W4", s, "store_s")
        if store is None:
            rows.append([s, why_missing(results, "W4", s), "", "", "", ""])
            continue
        node = results["W4"][s]
        rows.append([
            s,
            duration(store),
            duration(median(node, "load_s")),
            f"{sig(node['store_vs_np_save'], 2)}x",
            f"{sig(node['load_vs_np_load'], 2)}x",
            str(node.get("runs", len(node["store_s"].get("samples", [])))),
        ])  # fmt: skip
    header = ["", "store", "load", "store ÷ np.save", "load ÷ np.load", "runs"]
    return table(header, rows)


def scale(results: dict[str, Any]) -> str:
    """W5: hit latency at each size, its growth, and the footprint at the largest size."""
    subjects = [s for s in ALL if s in results.get("scale", {})]
    sizes = sorted(
        {st["stored"] for s in subjects for st in get(results, "scale", s, "steps") or []}
    )
    rows = []
    for s in subjects:
        steps = {st["stored"]: st for st in get(results, "scale", s, "steps") or []}
        if not steps:
            rows.append([s, why_missing(results, "scale", s), *[""] * (len(sizes) + 3)])
            continue
        hits = [median(steps.get(n, {}), "hit_us") for n in sizes]
        ordered = sorted(steps)
        first, last = steps[ordered[0]], steps[ordered[-1]]
        before = ordered[-2] if len(ordered) > 1 else 0
        foot = last.get("footprint") or {}
        where = "" if last["stored"] == sizes[-1] else f" (at {last['stored']:,})"
        rows.append([
            s,
            *[us(h) for h in hits],
            ratio(growth(first, last, "hit_us"), 1) + where,
            (size(foot.get("bytes")) if foot else size(last.get("rss_added")) + " RSS") + where,
            f"{foot['files']:,}" if foot else "—",
            duration(last["fill_s"] / max(1, last["stored"] - before)),
        ])  # fmt: skip
    header = [
        "",
        *[f"hit at {n:,}" for n in sizes],
        f"largest ÷ {sizes[0]:,}" if sizes else "",
    ]
    header += ["size at the largest", "files / keys", "fill, per call"]
    in_turn = [
        s
        for s in subjects
        if any("reference_hit_us" in st for st in get(results, "scale", s, "steps") or [])
    ]
    notes = [
        f"- the largest ÷ {sizes[0]:,} column of {', '.join(in_turn)}: the largest step's hit "
        f"over the hit of a second store holding {sizes[0]:,} calls, the two timed in turn; "
        "of the others, over the first step's own hit"
        for _ in in_turn[:1]
    ]  # fmt: skip
    notes += [
        f"- {s}: not filled to {n['stored']:,}: {n['why']}"
        for s in subjects
        for n in get(results, "scale", s, "not_reached") or []
    ]
    skipped = [
        f"- {s}: {node['skipped']}"
        for s, node in results.get("scale", {}).items()
        if isinstance(node, dict) and "skipped" in node
    ]
    return "\n".join([table(header, rows), *([""] if notes or skipped else []), *notes, *skipped])


def concurrency(results: dict[str, Any]) -> str:
    """W6: how many times the body ran when two processes asked for the same keys at once."""
    rows = []
    for s in _subjects(results, "W6", "W6"):
        node = results["W6"][s]
        if "body_runs" not in node:
            rows.append([s, why_missing(results, "W6", s), "", "", ""])
            continue
        runs = f"{node['body_runs']} (ideal {node['keys']})"
        hang = "HUNG (killed)" if node["hang"] else "no"
        errors = "; ".join(node.get("child_errors", [])) or "none"
        rows.append([s, runs, hang, duration(node["wall_s"]), errors])
    return table(["", "body runs", "hang", "wall time", "errors in the processes"], rows)


def startup(results: dict[str, Any]) -> str:
    """W7: import time, and the first call of a fresh process (empty store, then a stored one)."""
    imports = results.get("imports", {})
    rows = []
    for s in _subjects(results, "W7", "W7"):
        library = "fleche" if s.startswith("fleche-") else s
        node = results["W7"][s]
        imp = get(imports, library, "import_s")
        first = node.get("first_miss_s")
        rows.append([
            s,
            duration(imp) if imp is not None else why_missing(imports, library, "import_s"),
            duration(first) if first is not None else why_missing(results, "W7", s),
            duration(node.get("first_hit_s")),
        ])  # fmt: skip
    text = table(["", "import", "first call (miss)", "first call (hit)"], rows)
    fleche = imports.get("fleche", {})
    if "importtime_modules" in fleche:
        heavy = ", ".join(fleche["heavy_modules"]) or "none"
        text += (
            f"\n\n`python -X importtime -c 'import fleche'`: {fleche['importtime_modules']} modules, "
            f"{sig(fleche['importtime_cumulative_us'] / 1e3)} ms cumulative; heavy libraries "
            f"loaded at import: {heavy}. `python -c pass` took {duration(imports['python_pass_s'])}."
        )
    return text


def queries(results: dict[str, Any]) -> str:
    """W8: query by one argument (1 match, 1% match), expand and shrink, at each size."""
    rows = []
    for s in FLECHE:
        for step in get(results, "scale", s, "steps") or []:
            if "query_one_s" not in step:
                continue
            rows.append([
                s,
                f"{step['stored']:,}",
                duration(median(step, "query_one_s")),
                f"{duration(median(step, 'query_group_s'))} ({step['group_size']:,} calls)",
                us(median(step, "expand_us")),
                us(median(step, "shrink_us")),
            ])  # fmt: skip
    header = ["", "stored", "query(a=…) → 1", "query(b=…).count() → 1%", "expand", "shrink"]
    in_turn = [
        s
        for s in FLECHE
        if any("reference_query_one_s" in st for st in get(results, "scale", s, "steps") or [])
    ]
    if not in_turn:
        return table(header, rows)
    return table(header, rows) + (
        f"\n\n`query(a=…) → 1` after the first step, on {', '.join(in_turn)}: timed in turn with "
        "the same query on a second store holding the first size's calls; the growth target "
        "divides by that store's."
    )


def memory(results: dict[str, Any]) -> str:
    """Peak RSS: digesting a large array, storing and loading a large result, holding a store."""
    rows = []
    for layout in ("C", "F"):
        node = results.get(f"mem-digest-{layout}")
        if node and "added_rss" in node:
            what = "C order" if layout == "C" else "transposed view (chunked)"
            rows.append([f"digest a {size(node['bytes'])} array, {what}", "fleche",
                         f"+{size(node['added_rss'])}"])  # fmt: skip
    for s in _subjects(results, "mem-store", "memory"):
        node = results["mem-store"][s]
        if "peak" not in node:
            rows.append(["store + load a large result", s, why_missing(results, "mem-store", s)])
            continue
        rows.append([
            f"store + load a {size(node['bytes'])} result",
            s,
            f"+{size(node['peak'])} ({sig(node['peak_over_size'], 2)}x its size)",
        ])  # fmt: skip
    for s in FLECHE:
        node = get(results, "scale", s, "open")
        if node and "peak_rss" in node:
            rows.append([f"a process holding {node['stored']:,} stored calls, 1,000 hits", s,
                         f"{size(node['peak_rss'])} peak RSS"])  # fmt: skip
    return table(["", "subject", "peak RSS"], rows)


def floors(results: dict[str, Any]) -> str:
    node = results.get("floors") or {}
    if "xxh3_128_s" not in node:
        return "Floors were not measured in this run."
    rows = []
    for name, label in (
        ("xxh3_128", "xxh3-128 over the buffer"),
        ("sha256", "SHA-256 over the buffer"),
        ("copy", "`arr.copy()` (memory bandwidth)"),
        ("np_save", "`np.save` to a temporary file"),
        ("np_load", "`np.load` from it"),
    ):
        rows.append(
            [label, duration(median(node, name + "_s")), f"{sig(node[name + '_gbps'], 2)} GB/s"]
        )
    return f"Over a {size(node['bytes'])} float64 buffer:\n\n" + table(
        ["floor", "time", "speed"], rows
    )


def not_applicable() -> str:
    """Why some peers have no row in some workloads."""
    lines = [f"- {w}: `lru_cache` and `cachetools` — {why}" for w, why in NOT_APPLICABLE.items()]
    lines[-1] = f"- W8: every peer — {NOT_APPLICABLE['W8']}"
    return "\n".join(lines)
