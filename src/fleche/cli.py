"""The ``fleche`` command (also ``python -m fleche``): inspect and manage a cache.

Exit codes: 0 success; 1 an error (storage, configuration); 2 bad usage; 3 a key or prefix not
found; 4 an ambiguous prefix; 5 ``verify`` found corrupt entries. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import __version__
from .call import QueryCall
from .digest import Digest, digest
from .errors import AmbiguousDigestError, FlecheError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_AMBIGUOUS, EXIT_CORRUPT = 0, 1, 2, 3, 4, 5
MIN_SHORT = 7  # digests print at least this long, longer when needed to be unique (as git does)

Command = Callable[[argparse.Namespace], int]


def _open(target: str | None) -> Any:
    from .config import resolve_cache
    from .state import active_cache

    return resolve_cache(target) if target else active_cache()


def _emit(args: argparse.Namespace, data: Any, lines: Iterable[str]) -> None:
    if args.json:
        print(json.dumps(data, default=str, indent=None))
    else:
        for line in lines:
            print(line)


def _shorts(cache: Any, keys: list[str]) -> list[str]:
    if not keys:
        return []
    shrunk = cache.shrink(*keys)
    shrunk = [shrunk] if isinstance(shrunk, str) else shrunk
    return [key[: max(MIN_SHORT, len(short))] for key, short in zip(keys, shrunk, strict=True)]


def _summary(value: Any, width: int = 60) -> str:
    text = repr(value)
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (str, bytes)):
        return f"{type(value).__name__} shape={tuple(shape)} dtype={getattr(value, 'dtype', '?')}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _parse_value(cache: Any, text: str) -> Any:
    """``3`` and ``'a'`` are Python literals, ``:ab12`` a stored value's digest prefix, else a str."""
    if text.startswith(":"):
        return Digest(cache.values_expand(text[1:]))
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _template(cache: Any, func: str | None, pairs: Sequence[str]) -> QueryCall:
    arguments: dict[str, Any] = {}
    for pair in pairs:
        parameter, sep, value = pair.partition("=")
        if not sep or not parameter:
            raise ValueError(f"expected name=value, got {pair!r}")
        arguments[parameter] = _parse_value(cache, value)
    module: str | None = None
    function = func
    if func and ":" in func:
        module, function = func.split(":", 1)
    return QueryCall(function, arguments, module=module)


def _rows(cache: Any, calls: list[Any]) -> list[dict[str, Any]]:
    shorts = _shorts(cache, [c.key for c in calls])
    return [
        {
            "key": c.key,
            "short": short,
            "function": c.name,
            "module": c.module,
            "arguments": dict(c.record.arguments),
            "created": c.created,
        }
        for c, short in zip(calls, shorts, strict=True)
    ]


def _list_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"{r['short']}  {r['module']}:{r['function']}({', '.join(r['arguments'])})" for r in rows
    ]


# --- commands -----------------------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    rows = _rows(cache, list(cache.query(_template(cache, args.func, []))))
    _emit(args, rows, _list_lines(rows))
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    rows = _rows(cache, list(cache.query(_template(cache, args.func, args.arguments))))
    _emit(args, rows, _list_lines(rows) or ["no stored call matches"])
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    key = cache.expand(args.prefix)
    call = cache.load(key)
    arguments = {}
    for name, value_digest in call.record.arguments.items():
        try:
            arguments[name] = _summary(call.arguments[name])
        except KeyError:
            arguments[name] = f"<not stored, digest {value_digest[:MIN_SHORT]}>"
    try:
        result = _summary(call.result)
    except KeyError:
        result = "<result missing>"
    data = {
        "key": key,
        "function": call.name,
        "module": call.module,
        "version": call.version,
        "arguments": arguments,
        "result": result,
        "metadata": call.metadata,
    }
    lines = [f"key       {key}", f"function  {call.module}:{call.name}"]
    if call.version is not None:
        lines.append(f"version   {call.version}")
    lines += [f"  {name} = {text}" for name, text in arguments.items()]
    lines.append(f"result    {result}")
    lines.append(f"metadata  {json.dumps(call.metadata, default=str, sort_keys=True)}")
    _emit(args, data, lines)
    return EXIT_OK


def cmd_expand(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    source = cache.values_expand if args.values else cache.expand
    found = [source(prefix) for prefix in args.prefix]
    _emit(args, found, found)
    return EXIT_OK


def cmd_shrink(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    found = _shorts(cache, list(args.key))
    _emit(args, found, found)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    stats = _open(args.cache).stats()
    _emit(args, stats, [f"{name}: {value}" for name, value in stats.items()])
    return EXIT_OK


def cmd_evict(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    keys = [cache.expand(prefix) for prefix in args.prefix]
    shorts = _shorts(cache, keys)  # while they are stored: as long as it takes to tell them apart
    for key in keys:
        cache.evict(key)
    _emit(args, keys, [f"evicted {short}" for short in shorts])
    return EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    removed = _open(args.cache).gc()
    _emit(args, {"removed": removed}, [f"removed {removed} unreferenced values"])
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """Load every call record and value, re-hash the values; report (and remove) corrupt ones."""
    from contextlib import nullcontext

    from .storage.base import keeping_corrupt

    cache = _open(args.cache)
    calls, values = list(cache.list()), list(cache.value_keys())
    corrupt_calls, corrupt, mismatched = [], [], []
    total = len(calls) + len(values)
    with keeping_corrupt() if args.keep else nullcontext():
        for i, key in enumerate(calls, 1):
            if _corrupt_on_load(cache._load_record, key) is _CORRUPT:
                corrupt_calls.append(key)
            _progress(args, "verify", i, total)
        for i, key in enumerate(values, len(calls) + 1):
            value = _corrupt_on_load(cache.load_value, key)
            if value is _CORRUPT:
                corrupt.append(key)
            elif value is not _MISSING and _rehash(value) != key:
                mismatched.append(key)
            _progress(args, "verify", i, total)
    fate = "kept" if args.keep else "removed"
    data = {
        "checked": len(values),
        "checked_calls": len(calls),
        "corrupt": corrupt,
        "corrupt_calls": corrupt_calls,
        "digest_mismatch": mismatched,
        "removed": not args.keep,
    }
    lines = [f"checked {len(calls)} calls and {len(values)} values: "
             f"{len(corrupt_calls) + len(corrupt)} corrupt ({fate}), "
             f"{len(mismatched)} whose digest changed on reload"]  # fmt: skip
    lines += [f"corrupt call {key}" for key in corrupt_calls]
    lines += [f"corrupt value {key}" for key in corrupt]
    lines += [f"mismatch {key}" for key in mismatched]
    _emit(args, data, lines)
    return EXIT_CORRUPT if corrupt or corrupt_calls else EXIT_OK


_MISSING, _CORRUPT = object(), object()


def _corrupt_on_load(load: Callable[[str], Any], key: str) -> Any:
    """``load(key)``; ``_CORRUPT`` when it failed its checksum, ``_MISSING`` when it is gone."""
    from .errors import CorruptEntryWarning, IntegrityError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return load(key)
        except IntegrityError:
            return _CORRUPT
        except KeyError:
            if any(issubclass(w.category, CorruptEntryWarning) for w in caught):
                return _CORRUPT
            return _MISSING


def _rehash(value: Any) -> str | None:
    try:
        return digest(value)
    except FlecheError:
        return None


def cmd_copy(args: argparse.Namespace) -> int:
    source, target = _open(args.source), _open(args.target)
    from .query import transfer_calls

    calls = list(source.query())
    copied = transfer_calls(source, calls, target, overwrite=args.overwrite,
                            progress=lambda done: _progress(args, "copy", done, len(calls)))  # fmt: skip
    _emit(args, {"copied": copied, "seen": len(calls)}, [f"copied {copied} of {len(calls)} calls"])
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    cache = _open(args.cache)
    keys = list(cache.list())
    if not args.yes:
        if not sys.stdin.isatty():
            print("fleche: clear needs --yes when not run interactively", file=sys.stderr)
            return EXIT_USAGE
        answer = input(
            f"remove all {len(keys)} stored calls from {args.cache or 'the cache'}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return EXIT_OK
    for key in keys:
        try:
            cache.evict(key)
        except KeyError:
            pass
    removed_values = cache.gc(grace=0) if _gc_takes_grace(cache) else cache.gc()
    _emit(args, {"calls": len(keys), "values": removed_values},
          [f"removed {len(keys)} calls and {removed_values} values"])  # fmt: skip
    return EXIT_OK


def _gc_takes_grace(cache: Any) -> bool:
    import inspect

    return "grace" in inspect.signature(cache.gc).parameters


def cmd_explain(args: argparse.Namespace) -> int:
    """Would ``FUNC(name=value ...)`` hit? Answered through the indexes, as ``f.explain`` is."""
    from .explain import nearest

    cache = _open(args.cache)
    template = _template(cache, args.func, args.arguments)
    asked = {name: digest(value) for name, value in template.arguments.items()}
    base = QueryCall(template.name, module=template.module)
    exact = [
        key
        for key, record in cache._query_records(
            QueryCall(template.name, asked, {}, template.module)
        )
        if set(record.arguments) == set(asked)
    ]
    near = [] if exact else nearest(cache, base, asked)
    data = {
        "stored": bool(exact),
        "keys": exact,
        "nearest": [{"key": n.key, "differing": list(n.differing)} for n in near],
    }
    if exact:
        lines = [f"stored: {_shorts(cache, exact)[0]} (a call would hit)"]
    elif not near:
        lines = [f"no stored call of {args.func}"]
    else:
        lines = ["not stored; nearest stored calls:"]
        shorts = _shorts(cache, [n.key for n in near])
        lines += [
            f"  {s} differs in {', '.join(n.differing)}" for s, n in zip(shorts, near, strict=True)
        ]
    _emit(args, data, lines)
    return EXIT_OK if exact else EXIT_NOT_FOUND


def _progress(args: argparse.Namespace, what: str, done: int, total: int) -> None:
    if args.json or not sys.stderr.isatty() or total < 2:
        return
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    print(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end,
          file=sys.stderr, flush=True)  # fmt: skip


# --- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs to list the commands)."""
    parser = argparse.ArgumentParser(
        prog="fleche",
        description="Inspect and manage a fleche cache.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 ambiguous prefix, 5 corrupt.",
    )
    parser.add_argument("--version", action="version", version=f"fleche {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", help="a cache name, URL or path (default: the configured one)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        command.set_defaults(run=run)
        return command

    add("ls", cmd_ls, "list stored calls").add_argument("func", nargs="?", help="[module:]name")
    show = add("show", cmd_show, "arguments, result summary and metadata of a stored call")
    show.add_argument("prefix")
    query = add("query", cmd_query, "stored calls of FUNC whose arguments match name=value")
    query.add_argument("func", help="[module:]name")
    query.add_argument("arguments", nargs="*", metavar="name=value")
    explain = add("explain", cmd_explain, "would FUNC(name=value ...) hit? if not, the nearest")
    explain.add_argument("func")
    explain.add_argument("arguments", nargs="*", metavar="name=value")
    expand = add("expand", cmd_expand, "the full key of each prefix")
    expand.add_argument("prefix", nargs="+")
    expand.add_argument("--values", action="store_true", help="expand value digests instead")
    add("shrink", cmd_shrink, "the shortest unambiguous prefix of each key").add_argument(
        "key", nargs="+"
    )
    add("stats", cmd_stats, "entries, values, bytes, hits and misses")
    add("evict", cmd_evict, "remove stored calls by key or prefix").add_argument(
        "prefix", nargs="+"
    )
    add("gc", cmd_gc, "remove values no stored call refers to")
    verify = add("verify", cmd_verify, "re-hash stored values; report (and remove) corrupt ones")
    verify.add_argument("--keep", action="store_true", help="report corrupt entries, keep them")
    copy = add("copy", cmd_copy, "copy every call from SOURCE to TARGET (any backends)")
    copy.add_argument("source")
    copy.add_argument("target")
    copy.add_argument("--overwrite", action="store_true", help="replace calls TARGET has")
    add("clear", cmd_clear, "remove every stored call and value").add_argument(
        "--yes", action="store_true", help="do not ask"
    )
    return parser


_DRIVERS = frozenset({"sqlalchemy", "psycopg", "pymysql", "redis", "sqlite3", "_sqlite3"})


def _from_a_driver(error: BaseException) -> bool:
    """Whether ``error`` comes from a database driver (server down, refused, lost connection)."""
    return type(error).__module__.split(".")[0] in _DRIVERS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; errors are one line on stderr and a documented exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except AmbiguousDigestError as e:
        print(f"fleche: {e}", file=sys.stderr)
        return EXIT_AMBIGUOUS
    except KeyError as e:
        print(f"fleche: not found: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except (FlecheError, OSError, ValueError, ImportError) as e:
        print(f"fleche: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        if not _from_a_driver(e):
            raise  # a bug in fleche: the traceback is what a report needs
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"fleche: the storage failed: {first_line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fleche: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
