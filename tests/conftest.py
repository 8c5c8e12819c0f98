"""Shared fixtures: caches over every storage, and service detection for server-backed ones.

Each backend registers a harness in ``tests/backends/<name>.py`` (see ``tests/backends/memory.py``);
the decorator suite and the storage conformance suite run over every registered harness.
"""

from __future__ import annotations

import pytest

import fleche
from fleche.state import _cache_var, _meta_var, _sticky

from .backends import HARNESSES, REQUIRE_SERVICES, service_unavailable

__all__ = ["REQUIRE_SERVICES", "service_unavailable"]


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch: pytest.MonkeyPatch):
    """Each test starts with a fresh in-memory default cache and no metadata."""
    monkeypatch.delenv("FLECHE_CACHE", raising=False)
    monkeypatch.delenv("FLECHE_DISABLE", raising=False)
    saved = dict(_sticky)
    _sticky["cache"] = fleche.config.cache_from_url("memory://")
    _sticky["meta"] = ()
    cache_token = _cache_var.set(None)
    meta_token = _meta_var.set(None)
    yield
    _cache_var.reset(cache_token)
    _meta_var.reset(meta_token)
    _sticky.update(saved)


@pytest.fixture(params=sorted(HARNESSES))
def harness(request, tmp_path):
    """A backend harness (fresh storages and caches of one kind); skips/fails if its server is down."""
    harness = HARNESSES[request.param](tmp_path)
    harness.check_available()
    yield harness
    harness.close()


@pytest.fixture
def any_cache(harness):
    """A fresh cache of each kind, made active for the test."""
    cache = harness.cache()
    with fleche.cache(cache):
        yield cache
