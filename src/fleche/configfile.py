"""``fleche.toml``: finding the files in effect and merging them (SPEC section 8).

Files are looked up from the working directory upward to ``$HOME`` (to the filesystem root when
the working directory is outside it), then ``$XDG_CONFIG_HOME/fleche/config.toml`` (default
``~/.config``; ``cache.toml`` there, the name of fleche 0.22.2, is read when ``config.toml`` is
absent). Nearer files win: a cache table of a nearer file replaces the one of the same name
farther away, and ``[default]`` merges key by key. A file with ``root = true`` (top level, or in
``[default]`` as in fleche 0.22.2) ends the walk: nothing farther, not even the XDG file, is read.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["FILE_NAME", "Settings", "Where", "discover", "load_settings", "xdg_config_file"]

FILE_NAME = "fleche.toml"
DEFAULT_KEYS = frozenset({"cache", "metadata", "root"})


@dataclass(frozen=True)
class Where:
    """Where a table was written: the file (None for a table given in code), its table path,
    and the directory relative paths resolve against."""

    path: Path | None
    table: str
    base: Path

    def child(self, name: str) -> Where:
        return Where(self.path, f"{self.table}.{name}" if self.table else name, self.base)

    def item(self, index: int) -> Where:
        return Where(self.path, f"{self.table}[{index}]", self.base)

    def error(self, message: str, key: str | None = None) -> ConfigError:
        """A ``ConfigError`` naming the file, the table and (when given) the key."""
        origin = str(self.path) if self.path else "configuration"
        table = f" [{self.table}]" if self.table else ""
        at = f" key {key!r}" if key is not None else ""
        return ConfigError(f"{origin}:{table}{at}: {message}")

    @classmethod
    def in_code(cls, table: str = "") -> Where:
        """A table given in Python: relative paths resolve against the working directory."""
        return cls(None, table, Path.cwd())


@dataclass
class Settings:
    """The merged configuration: cache tables by name and the ``[default]`` keys, each with the
    place it came from; ``files`` lists the files read, nearest first."""

    files: list[Path] = field(default_factory=list)
    caches: dict[str, tuple[Any, Where]] = field(default_factory=dict)
    default: dict[str, tuple[Any, Where]] = field(default_factory=dict)


def xdg_config_file(home: Path | None) -> Path | None:
    """``$XDG_CONFIG_HOME/fleche/config.toml`` (or fleche 0.22.2's ``cache.toml`` there)."""
    base = os.environ.get("XDG_CONFIG_HOME") or (str(home / ".config") if home else "")
    if not base:
        return None
    folder = Path(base).expanduser() / "fleche"
    for name in ("config.toml", "cache.toml"):
        if (folder / name).is_file():
            return folder / name
    return None


def _home() -> Path | None:
    home = os.environ.get("HOME")
    if home:
        return Path(home).expanduser().resolve()
    try:
        return Path.home().resolve()
    except (RuntimeError, KeyError):
        return None


def discover(start: Path | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """The configuration files in effect with their parsed contents, nearest first."""
    here = (start or Path.cwd()).resolve()
    home = _home()
    found: list[tuple[Path, dict[str, Any]]] = []
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            data = _read(candidate)
            found.append((candidate, data))
            if _is_root(data):
                return found
        if folder == home:
            break
    xdg = xdg_config_file(home)
    if xdg is not None and xdg.resolve() not in {p.resolve() for p, _ in found}:
        found.append((xdg, _read(xdg)))
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e}") from None
    _check_file(path, data)
    return data


def _is_root(data: dict[str, Any]) -> bool:
    default = data.get("default")
    return data.get("root") is True or (isinstance(default, dict) and default.get("root") is True)


def _check_file(path: Path, data: dict[str, Any]) -> None:
    """Shape checks that need no building: top-level keys and the ``[default]`` table."""
    for name, value in data.items():
        where = Where(path, name, path.parent)
        if name == "root":
            if not isinstance(value, bool):
                raise Where(path, "", path.parent).error("must be true or false", "root")
        elif name == "default":
            if not isinstance(value, dict):
                raise where.error("must be a table ([default])")
            for key in value:
                if key not in DEFAULT_KEYS:
                    known = ", ".join(sorted(DEFAULT_KEYS))
                    raise where.error(f"unknown key (known: {known})", key)
            if "root" in value and not isinstance(value["root"], bool):
                raise where.error("must be true or false", "root")
        elif name in ("memory", "void"):
            raise where.error(f"{name!r} is a reserved cache name; choose another")
        elif not isinstance(value, dict | list):
            raise Where(path, "", path.parent).error(
                f"a cache is a table [{name}] or an array of tables [[{name}]], not "
                f"{type(value).__name__}",
                name,
            )


def load_settings(start: Path | None = None) -> Settings:
    """Read and merge the files in effect (nearest wins)."""
    settings = Settings()
    for path, data in discover(start):
        settings.files.append(path)
        for name, value in data.items():
            if name == "root":
                continue
            where = Where(path, name, path.parent)
            if name == "default":
                for key, item in value.items():
                    if key != "root":
                        settings.default.setdefault(key, (item, where))
            else:
                settings.caches.setdefault(name, (value, where))
    return settings
