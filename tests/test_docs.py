"""The interactive examples of the user guide run as doctests, so the pages cannot drift.

Every fenced ``pycon`` block of a page under ``docs/`` is one part of that page's doctest; the
blocks of a page share their names, in order, under a fresh in-memory cache. Blocks fenced as
``python`` or ``console`` are not run here (``examples/`` scripts are, by ``test_examples.py``).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

import fleche

DOCS = Path(__file__).parent.parent / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "```pycon" in p.read_text(encoding="utf-8"))
# a fence opens with ```pycon (optionally indented, e.g. inside an admonition) and closes with ```
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```pycon[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
_PYTHON = re.compile(
    r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def interactive_blocks(text: str) -> str:
    """The page with every line outside a ``pycon`` block blanked (so line numbers still match)."""
    kept = [""] * len(text.splitlines())
    for match in _BLOCK.finditer(text):
        indent = len(match["indent"])
        first = text.count("\n", 0, match.start("body"))
        for i, line in enumerate(match["body"].splitlines()):
            kept[first + i] = line[indent:]
    return "\n".join(kept) + "\n"


def test_the_block_extractor_keeps_output_and_drops_fences() -> None:
    text = "intro\n```pycon\n>>> 1 + 1\n2\n```\n\n    ```pycon\n    >>> 'a'\n    'a'\n    ```\n"
    assert interactive_blocks(text) == "\n\n>>> 1 + 1\n2\n\n\n\n>>> 'a'\n'a'\n\n"


def test_api_pages_render_doctests_as_code_and_roles_as_code() -> None:
    spec = importlib.util.spec_from_file_location("griffe_fleche", DOCS / "griffe_fleche.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "What.\n\n    >>> f(1)\n    2\n\nMore, see :func:`~fleche.config.g`.\n>>> x"
    assert module.fence_doctests(text) == (
        "What.\n\n    ```pycon\n    >>> f(1)\n    2\n    ```\n\nMore, see :func:`~fleche.config.g`."
        "\n```pycon\n>>> x\n```"
    )
    assert (
        module._ROLE.sub(lambda m: f"`{m[1]}`", "see :func:`~fleche.config.g`")
        == "see `fleche.config.g`"
    )


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # pages that persist write into a scratch directory
    source = interactive_blocks(page.read_text(encoding="utf-8"))
    parser = doctest.DocTestParser()
    test = parser.get_doctest(source, {"__name__": "example"}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    with fleche.cache("memory://"):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} example(s) of {page.name} failed (output above)"


def python_blocks(text: str) -> list[str]:
    """The ``python`` blocks of a page (not run: they name files, servers and slow functions)."""
    blocks = [textwrap.dedent(m["body"]) for m in _PYTHON.finditer(text)]
    return [b for b in blocks if "--8<--" not in b]  # an included example is run by its test


ALL_PAGES = sorted(DOCS.rglob("*.md"))


@pytest.mark.parametrize("page", ALL_PAGES, ids=[str(p.relative_to(DOCS)) for p in ALL_PAGES])
def test_python_blocks_parse_and_import_only_what_fleche_has(page: Path) -> None:
    for block in python_blocks(page.read_text(encoding="utf-8")):
        for node in ast.walk(ast.parse(block, filename=str(page))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fleche":
                module = importlib.import_module(str(node.module))
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{page.name}: {node.module}.{alias.name}"
