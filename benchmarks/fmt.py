"""Reading results and formatting cells: units, ratios, and why a cell is empty."""

from __future__ import annotations

from typing import Any

MIB = 1 << 20


def get(results: dict[str, Any], *path: Any) -> Any:
    """The value at ``path`` in the results, or None when any step is missing."""
    node: Any = results
    for step in path:
        if (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node)
        ):
            node = node[step]
        else:
            return None
    return node


def median(results: dict[str, Any], *path: Any) -> float | None:
    """The median of a timing summary at ``path`` (or the number itself)."""
    node = get(results, *path)
    if isinstance(node, dict):
        node = node.get("median")
    return node if isinstance(node, int | float) else None


def growth(first: dict[str, Any], last: dict[str, Any], field: str) -> float | None:
    """W5/W8: ``field`` (``hit_us``, ``query_one_s``) at the ``last`` step over the same at the
    ``first``: from the reference store's figure (holding the first size) timed in turn with the
    last step's, when there is one (``scale.Reference``), else from the first step's own."""
    hit, before = median(last, field), median(last, "reference_" + field) or median(first, field)
    return hit / before if hit is not None and before else None


def why_missing(results: dict[str, Any], task: str, subject: str) -> str:
    """A short cell text for a subject without a figure: unavailable, error, or not run."""
    node = get(results, task, subject)
    if node is None:
        return "not run"
    if "unavailable" in node:
        return "unavailable"
    if "error" in node:
        return "error"
    if "skipped" in node:
        return "--full only"
    return "n/a"


def sig(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, without scientific notation."""
    if x == 0:
        return "0"
    magnitude = len(str(int(abs(x)))) if abs(x) >= 1 else 0
    decimals = max(0, digits - magnitude)
    if abs(x) < 1:
        text = f"{x:.{digits}g}"
        return text if "e" not in text else f"{x:.6f}"
    return f"{x:,.{decimals}f}"


def us(x: float | None) -> str:
    return "—" if x is None else f"{sig(x)} µs"


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{sig(seconds * 1e3)} ms"


def duration(seconds: float | None) -> str:
    """Seconds in the unit that reads best: µs, ms or s."""
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{sig(seconds * 1e6)} µs"
    if seconds < 1:
        return f"{sig(seconds * 1e3)} ms"
    return f"{sig(seconds)} s"


def size(n: float | None) -> str:
    if n is None:
        return "—"
    if abs(n) >= 1 << 30:
        return f"{sig(n / (1 << 30))} GiB"
    if abs(n) >= MIB:
        return f"{sig(n / MIB)} MiB"
    if abs(n) >= 1024:
        return f"{sig(n / 1024)} KiB"
    return f"{int(n)} B"


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``0.42x`` (below 1: the first is faster or smaller)."""
    if a is None or b is None or b == 0:
        return "—"
    return f"{sig(a / b, 2)}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
