"""Metadata recorders: what is stored beside a call, never part of its key (SPEC section 11).

A recorder has a ``key`` (its place in the call's metadata), ``begin()`` before the function runs and
``end(state)`` after it, which returns JSON-compatible data.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from ._log import get_logger
from .errors import ConfigError

__all__ = [
    "RECORDERS",
    "Environment",
    "Git",
    "MetaData",
    "Runtime",
    "Tags",
    "collect",
    "recorder_from_config",
]

log = get_logger(__name__)


class MetaData:
    """Base recorder: subclasses set ``key`` and implement ``end`` (and ``begin`` when timing)."""

    key = "metadata"

    def begin(self) -> Any:
        """Called before the function runs; what it returns is passed to :meth:`end`."""
        return None

    def end(self, state: Any) -> Any:
        """Called after the function returns: the JSON data stored under ``key``."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(map(repr, vars(self).items())))))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Tags(MetaData):
    """Free-form key/value tags, stored under ``tags`` (nested ``with tags(...)`` blocks merge).

    Tags are JSON: they are normalised when made (a tuple becomes a list), so every storage keeps
    and matches the same thing, and a value JSON cannot hold raises ``TypeError`` at once, before
    any computation, rather than when the call is stored. ``with tags(k=v):`` is the usual way to
    add them.

    >>> Tags(sweep="coarse", layers=(64, 32)).end(None)
    {'sweep': 'coarse', 'layers': [64, 32]}
    """

    key = "tags"

    def __init__(self, **tags: Any) -> None:
        import json  # here, not at module level: ``import fleche`` stays fast

        try:
            self.tags = json.loads(json.dumps(tags, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"tags must be JSON values (str, number, bool, None, list, dict): {e}"
            ) from None

    def end(self, state: Any) -> dict[str, Any]:
        return dict(self.tags)


class Runtime(MetaData):
    """When the computation started and ended, and how long it took (seconds).

    ``start`` and ``end`` are wall-clock times (seconds since the epoch), ``duration`` is measured
    with a monotonic clock.

    >>> from fleche import cache, fleche, meta
    >>> @fleche
    ... def step(x):
    ...     return x + 1
    >>> with cache("memory://"), meta(Runtime()):
    ...     step(1)
    ...     sorted(step.query().only().metadata["runtime"])
    2
    ['duration', 'end', 'start']
    """

    key = "runtime"

    def begin(self) -> Any:
        return time.time(), time.perf_counter()

    def end(self, state: Any) -> dict[str, float]:
        start, counter = state
        return {"start": start, "end": time.time(), "duration": time.perf_counter() - counter}


class Environment(MetaData):
    """Python version, platform, host and the versions of the packages asked for.

    ``packages`` is a list of distribution names (a package that is not installed is recorded as
    ``None``): ``Environment(["numpy", "pandas"])``, or ``Environment("numpy")`` for one.

    >>> sorted(Environment(["xxhash"]).end(None))
    ['host', 'implementation', 'packages', 'platform', 'python']
    >>> list(Environment(["xxhash", "no-such-package"]).end(None)["packages"])
    ['xxhash', 'no-such-package']
    """

    key = "environment"

    def __init__(self, packages: Iterable[str] | str = ()) -> None:
        # one name given as a string is one package, not a sequence of letters
        self.packages = (packages,) if isinstance(packages, str) else tuple(packages)

    def end(self, state: Any) -> dict[str, Any]:
        return _environment(self.packages)


@functools.lru_cache(maxsize=32)
def _environment(packages: tuple[str, ...]) -> dict[str, Any]:
    import platform  # here, not at module level: ``import fleche`` stays fast
    import socket
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": found,
    }


class Git(MetaData):
    """The commit and dirty state of the git work tree at ``path`` (the working directory).

    Outside a git work tree (or without ``git``) it records nothing.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as outside:
    ...     Git(outside).end(Git(outside).begin()) is None
    True
    """

    key = "git"

    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def end(self, state: Any) -> dict[str, Any] | None:
        # asked again every few seconds (a commit during a long session shows), not per call
        return _git(os.path.abspath(self.path or os.getcwd()), int(time.monotonic() // _GIT_TTL))


_GIT_TTL = 10.0


@functools.lru_cache(maxsize=32)
def _git(path: str, period: int = 0) -> dict[str, Any] | None:
    import subprocess

    def run(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=path, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def collect(recorders: Iterable[MetaData], states: list[Any]) -> dict[str, Any]:
    """Call ``end`` on each recorder; dict results under one key merge (later ones win).

    A recorder that fails is logged and recorded as ``None``: the result it describes has been
    computed and is still stored.
    """
    metadata: dict[str, Any] = {}
    for recorder, state in zip(recorders, states, strict=True):
        try:
            value = recorder.end(state)
        except Exception as e:
            log.warning("metadata recorder %r failed: %s: %s", recorder, type(e).__name__, e)
            value = None
        current = metadata.get(recorder.key)
        if isinstance(current, dict) and isinstance(value, dict):
            metadata[recorder.key] = {**current, **value}
        else:
            metadata[recorder.key] = value
    return metadata


RECORDERS: dict[str, type[MetaData]] = {
    "runtime": Runtime,
    "environment": Environment,
    "git": Git,
    "tags": Tags,
}
"""Recorders by the name ``[default] metadata`` uses in ``fleche.toml``; add your own here."""


def recorder_from_config(item: str | dict[str, Any]) -> MetaData:
    """A recorder from ``fleche.toml``: a name (``"git"``, case-insensitive) or a table with
    ``type`` and the recorder's options (``{type = "environment", packages = ["numpy"]}``)."""
    if isinstance(item, str):
        name, options = item, {}
    elif isinstance(item, dict) and isinstance(item.get("type"), str):
        options = dict(item)
        name = options.pop("type")
    else:
        raise ConfigError(f"a metadata recorder is a name or a table with a type, not {item!r}")
    recorder = RECORDERS.get(name.lower())
    if recorder is None:
        raise ConfigError(f"unknown metadata recorder {name!r} (known: {', '.join(RECORDERS)})")
    try:
        return recorder(**options)
    except TypeError as e:
        raise ConfigError(f"metadata recorder {name!r}: {e}") from None
