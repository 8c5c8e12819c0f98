"""Secrets in storage URLs never show in a repr."""

from __future__ import annotations

import pytest

from fleche._urls import masked
from fleche.config import cache_from_url

SECRET = "00112233445566778899aabbccddeeff"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("memory://", "memory://"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://bob:pw@h/db?prefix=a", "postgresql://bob:***@h/db?prefix=a"),
        (
            "postgresql://bob@h/db?secret_key=ab&prefix=a",
            "postgresql://bob@h/db?secret_key=***&prefix=a",
        ),
    ],
)
def test_masked_hides_passwords_and_secret_keys(url: str, shown: str) -> None:
    assert masked(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://postgres:hunter2@127.0.0.1:5432/test?secret_key={SECRET}",
        f"redis://:hunter2@127.0.0.1:6379/0?secret_key={SECRET}",
        f"sqlite:///x.db?secret_key={SECRET}",
    ],
    ids=["postgresql", "redis", "sqlite"],
)
def test_cache_and_storage_reprs_hide_secrets(url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = cache_from_url(url)  # building connects to nothing: the repr needs no server
    for shown in (repr(built), repr(built.values), repr(built.calls)):
        assert "hunter2" not in shown
        assert SECRET not in shown
