"""Digest properties: determinism, order-insensitivity, type distinctions, errors, numpy, pandas."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import subprocess
import sys
import threading

import attrs
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleche import D, Digest, DigestError, digest
from fleche.digest import DIGEST_LENGTH, code_digest, register, unregister

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.frozensets(st.integers(), max_size=4),
    ),
    max_leaves=12,
)


@given(values)
def test_equal_values_give_equal_digests(value: object) -> None:
    import copy

    assert digest(value) == digest(copy.deepcopy(value))
    assert len(digest(value)) == DIGEST_LENGTH


@given(st.dictionaries(st.text(max_size=8), st.integers(), min_size=2, max_size=8), st.randoms())
def test_dict_order_never_matters(mapping: dict, random) -> None:
    items = list(mapping.items())
    random.shuffle(items)
    assert digest(dict(items)) == digest(mapping)


@given(st.sets(st.integers(), min_size=2, max_size=20), st.randoms())
def test_set_order_never_matters(elements: set, random) -> None:
    shuffled = list(elements)
    random.shuffle(shuffled)
    assert digest(set(shuffled)) == digest(elements)
    assert digest(frozenset(shuffled)) == digest(frozenset(elements))
    assert digest(set(elements)) != digest(frozenset(elements))


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_distinct_types_differ(n: int) -> None:
    forms = {digest(n), digest(float(n)), digest(str(n)), digest([n]), digest((n,))}
    assert len(forms) == 5


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (1, True),
        (1, "1"),
        ([1], (1,)),
        (0.0, -0.0),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00")),
        (b"a", bytearray(b"a")),
        ("a", b"a"),
        (
            datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC),
            datetime.datetime(
                2024, 1, 1, 13, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
            ),
        ),
        ({1: 2}, {2: 1}),
        ([[1], [2]], [[1, 2]]),
        ("ab", ("a", "b")),
        (None, "None"),
    ],
)
def test_values_that_must_differ(a: object, b: object) -> None:
    assert digest(a) != digest(b)


def test_digest_is_str_subclass_and_full_digest_stands_for_value() -> None:
    d = digest({"x": 1})
    assert isinstance(d, Digest) and isinstance(d, str)
    assert digest(d) == d
    assert digest(D({"x": 1})) == d


def test_D_makes_prefixes_from_hex_and_digests_the_rest() -> None:
    assert D("ABC") == "abc" and isinstance(D("abc"), Digest)
    assert D("2024") == "2024"  # a prefix, not the digest of the string (documented)
    assert D("xyz") == digest("xyz")
    assert D(None) == digest(None)
    assert D(1) == digest(1)
    assert D("a" * 33) == digest("a" * 33)


def test_short_digest_cannot_be_digested() -> None:
    with pytest.raises(DigestError, match="expanded"):
        digest(D("abc"))


def test_digest_error_names_type_and_place() -> None:
    lock = threading.Lock()
    with pytest.raises(DigestError) as info:
        digest({"cfg": {"layers": [1, 2, 3, lock]}})
    message = str(info.value)
    assert "lock" in message
    assert "['cfg']['layers'][3]" in message
    assert isinstance(info.value, TypeError)


def test_reference_cycle_raises_digest_error() -> None:
    cycle: list = [1]
    cycle.append(cycle)
    with pytest.raises(DigestError, match="cycle"):
        digest(cycle)


def test_iterators_and_generators_are_refused() -> None:
    with pytest.raises(DigestError, match="iterator"):
        digest(iter([1, 2]))
    with pytest.raises(DigestError, match="iterator"):
        digest(x for x in range(3))


@dataclasses.dataclass
class Config:
    lr: float
    layers: list


@attrs.define
class AttrsConfig:
    lr: float
    layers: list


class Plain:
    def __init__(self, a: int) -> None:
        self.a = a


def test_dataclasses_attrs_and_plain_objects_digest_by_fields() -> None:
    assert digest(Config(0.1, [1])) == digest(Config(0.1, [1]))
    assert digest(Config(0.1, [1])) != digest(Config(0.1, [2]))
    assert digest(AttrsConfig(0.1, [1])) == digest(AttrsConfig(0.1, [1]))
    assert digest(AttrsConfig(0.1, [1])) != digest(Config(0.1, [1]))
    assert digest(Plain(1)) == digest(Plain(1)) != digest(Plain(2))


def test_class_identity_uses_module_and_qualname() -> None:
    class Plain:  # same bare name as the module-level class
        def __init__(self, a: int) -> None:
            self.a = a

    assert digest(Plain(1)) != digest(globals()["Plain"](1))


class WithDigest:
    def __init__(self, key: str, noise: int) -> None:
        self.key, self.noise = key, noise

    def __digest__(self) -> str:
        return self.key


def test_dunder_digest_and_registered_hooks() -> None:
    assert digest(WithDigest("a", 1)) == digest(WithDigest("a", 2))
    assert digest(WithDigest("a", 1)) != digest(WithDigest("b", 1))
    assert digest(WithDigest("a", 1)) != digest("a")  # tagged with the class
    register(WithDigest, lambda v: v.noise)
    try:
        assert digest(WithDigest("a", 1)) != digest(WithDigest("b", 2))
        assert digest(WithDigest("a", 1)) == digest(WithDigest("b", 1))  # hooks come first
    finally:
        unregister(WithDigest)
    assert digest(WithDigest("a", 1)) == digest(WithDigest("a", 2))


def test_functions_by_name_and_local_functions_by_code() -> None:
    def make(k: int):
        return lambda x: x + k

    assert digest(len) == digest(len)
    assert digest(make(1)) == digest(make(1))
    assert digest(make(1)) != digest(make(2))  # same qualified name, different captured value
    assert digest(lambda x: x + 1) != digest(lambda x: x * 2)


def test_code_digest_sees_code_constants_defaults_and_closures() -> None:
    def f(x, y=1):
        return x + 1

    def g(x, y=1):
        return x + 2

    def h(x, y=2):
        return x + 1

    assert code_digest(f) != code_digest(g)
    assert code_digest(f) != code_digest(h)
    assert code_digest(f) == code_digest(f)


def test_numpy_arrays_by_dtype_shape_and_content() -> None:
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    assert digest(a) == digest(a.copy())
    assert digest(a) == digest(np.asfortranarray(a))
    assert digest(a) != digest(a.astype(np.float32))
    assert digest(a) != digest(a.reshape(4, 3))
    assert digest(a[:, ::2]) == digest(np.ascontiguousarray(a[:, ::2]))
    assert digest(np.array(["a", None], dtype=object)) == digest(
        np.array(["a", None], dtype=object)
    )
    assert digest(np.float64(1.0)) != digest(1.0)
    assert digest(np.int32(1)) != digest(np.int64(1))


def test_large_array_streams_to_the_same_digest_as_its_bytes_layout() -> None:
    big = np.arange(2**18, dtype=np.float64)  # 2 MiB: takes the streaming path
    assert digest(big) == digest(big.copy())
    assert digest(big) != digest(big[:-1])
    assert digest(big.reshape(512, 512).T) == digest(np.ascontiguousarray(big.reshape(512, 512).T))


def test_pandas_objects_via_hook() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert digest(df) == digest(df.copy())
    assert digest(df) != digest(df.assign(a=[1, 3]))
    assert digest(df) != digest(df.rename(columns={"a": "c"}))
    assert digest(df["a"]) == digest(df["a"].copy())
    assert digest(df.set_index("b")) != digest(df)


def test_import_fleche_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, fleche\n"
        "heavy = [m for m in ('numpy', 'pandas', 'sqlalchemy', 'cloudpickle', 'redis', 'psycopg')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
