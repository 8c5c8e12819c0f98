"""Every registered backend harness (tests/backends) runs the one conformance suite."""

from __future__ import annotations

from fleche.testing.conformance import StorageConformance


class TestConformance(StorageConformance):
    """Runs over the ``harness`` fixture of tests/conftest.py, one parametrization per backend."""
