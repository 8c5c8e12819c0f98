"""Every ``fleche.toml`` shown in docs/configuration.md loads and builds the caches it describes.

Hosts of the examples (``db.lab``, ``cache.lab``, ``/shared/...``) do not exist here: they are
replaced by local storages of the same shape before the file is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleche import config
from fleche.caches import CachePool, CacheStack, ReadOnlyCache, SizeLimitedCache

PAGE = Path(__file__).parent.parent / "docs" / "configuration.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def localised(text: str, scratch: Path) -> str:
    text = re.sub(r"postgresql\+psycopg://[^\"]+", f"sqlite:///{scratch}/team.db", text)
    text = re.sub(r"redis://[^\"]+", f"file://{scratch}/redis", text)
    text = text.replace("file:///shared/", f"file://{scratch}/shared/")
    return re.sub(r'"[0-9a-f]{4}\.\.\.\w+"', '"' + "ab" * 16 + '"', text)  # placeholder keys


def test_the_page_shows_every_shape() -> None:
    shown = "".join(BLOCKS)
    for shape in ("url =", "values =", "calls =", "read_only", "max_entries", "max_bytes", "[[",
                  ".pool]]", "template", "values.type"):  # fmt: skip
        assert shape in shown, shape
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_example_file_builds(block, tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    project = home / "project"
    project.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(project)
    (project / "fleche.toml").write_text(localised(block, tmp_path), encoding="utf-8")
    config.reload()
    try:
        names = list(config.configured_caches())
        assert names
        built = {name: config.named_cache(name) for name in names}
        for name, table in _tables(block).items():
            kind = type(built[name])
            if table.startswith("[["):
                assert kind in (CacheStack, CachePool), name
            if "pool]]" in table:
                assert isinstance(built[name], (CachePool, CacheStack))
            if "max_entries" in table or "max_size" in table:
                assert kind is SizeLimitedCache, name
            elif "read_only = true" in table and not table.startswith("[["):
                assert kind is ReadOnlyCache, name
        if "default" in names:
            assert config.default_cache() is built["default"]
    finally:
        config.reload()


def _tables(block: str) -> dict[str, str]:
    """Each cache table's text, by name (the ``[default]`` table left out)."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^(\[\[?)([\w.]+)\]\]?\n(.*?)(?=^\[|\Z)", block, re.M | re.S):
        name = match[2].split(".")[0]
        if name != "default":
            found[name] = found.get(name, match[1] + match[2] + "]]\n") + match[3]
    return found
