"""Fixtures of the fault-injection suite: one persistent backend at a time, by URL."""

from __future__ import annotations

import pytest

from ..backends import HARNESSES

PERSISTENT = sorted(name for name in HARNESSES if name != "memory")


@pytest.fixture(params=PERSISTENT)
def persistent(request, tmp_path):
    """(kind, harness, url) of a fresh persistent cache that child processes can open."""
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    url = harness.cache().url
    assert url, f"{request.param} caches must have a URL"
    yield request.param, harness, url
    harness.close()
