"""A griffe extension for the API pages: docstrings are plain text with doctests, not Markdown.

Doctest examples (``>>>`` lines and their output) become ``pycon`` code blocks, which Markdown
would otherwise render as nested quotes, and Sphinx roles (``:func:`name```) become code.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each run of doctest lines (up to the next blank line) in a ``pycon`` fence."""
    out: list[str] = []
    indent: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if indent is None and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
        elif indent is not None and not stripped:
            out.append(f"{indent}```")
            indent = None
        out.append(line)
    if indent is not None:
        out.append(f"{indent}```")
    return "\n".join(out)


class FlecheDocstrings(griffe.Extension):
    """Rewrite every docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            value = _ROLE.sub(lambda m: f"`{m[1]}`", obj.docstring.value)
            obj.docstring.value = fence_doctests(value)
