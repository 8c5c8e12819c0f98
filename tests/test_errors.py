"""The error hierarchy of SPEC section 10: each error is a FlecheError and its builtin."""

from __future__ import annotations

import pytest

from fleche import errors


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.DigestError("x"), TypeError),
        (errors.ConfigError("x"), ValueError),
        (errors.MissingDependencyError("psycopg", "postgres"), ImportError),
        (errors.StorageError("x"), OSError),
        (errors.SaveError("x"), errors.StorageError),
        (errors.Rejected("x"), errors.StorageError),
        (errors.IntegrityError("x"), errors.StorageError),
        (errors.AmbiguousDigestError("ab", ["ab1", "ab2"]), ValueError),
        (errors.LockTimeoutError("x"), TimeoutError),
        (errors.InvalidKeyError("x"), ValueError),
        (errors.UsageError("x"), TypeError),
    ],
)
def test_each_error_is_a_fleche_error_and_its_builtin(error, builtin) -> None:
    assert isinstance(error, errors.FlecheError)
    assert isinstance(error, builtin)


def test_messages_name_what_to_do() -> None:
    assert "pip install 'fleche[postgres]'" in str(
        errors.MissingDependencyError("psycopg", "postgres")
    )
    ambiguous = errors.AmbiguousDigestError("ab", [f"ab{i}" for i in range(15)])
    assert "ab0" in str(ambiguous) and "ab9" in str(ambiguous) and "ab10" not in str(ambiguous)
    assert issubclass(errors.CorruptEntryWarning, errors.FlecheWarning)
