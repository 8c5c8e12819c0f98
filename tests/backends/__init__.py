"""Backend harnesses for the test suites, discovered from the modules of this package.

A module here defines ``HARNESS``: a class taking ``tmp_path`` with ``check_available()``,
``value_storage()``, ``call_storage()``, ``cache()``, ``raw_keys(storage)`` and ``close()`` (see
``fleche.testing.Harness``). Server-backed harnesses call ``service_unavailable`` when their server
is not reachable: a skip on a laptop, a failure in CI (``FLECHE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import importlib
import os
import pkgutil

import pytest

REQUIRE_SERVICES = os.environ.get("FLECHE_REQUIRE_SERVICES", "") not in ("", "0")


def service_unavailable(name: str, reason: str) -> None:
    """Skip (on a laptop) or fail (in CI, ``FLECHE_REQUIRE_SERVICES=1``) for a missing server."""
    message = f"{name} is not reachable ({reason})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and FLECHE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def _discover() -> dict[str, type]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        harness = getattr(module, "HARNESS", None)
        if harness is not None:
            found[harness.name] = harness
    return found


HARNESSES = _discover()
