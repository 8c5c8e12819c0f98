"""Golden digests: a table of values whose digests are pinned ON PURPOSE.

Any change to the digest scheme changes a stored cache's keys, so it must fail here first; if the
change is deliberate, bump ``fleche.digest.SCHEME_VERSION`` and regenerate the table.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import os
import pathlib
import subprocess
import sys
import uuid
from typing import NamedTuple

import pytest

from fleche import digest
from fleche.call import KeyMaker, lookup_key


class Color(enum.Enum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Pair(NamedTuple):
    left: int
    right: str


for _cls in (Color, Point, Pair):
    _cls.__module__ = "golden"  # class identity must not depend on how pytest imports this file


def golden_values() -> list[tuple[str, object]]:
    """(label, value) pairs; labels name the rows of the golden table."""
    return [
        ("none", None),
        ("ellipsis", ...),
        ("true", True),
        ("false", False),
        ("zero", 0),
        ("one", 1),
        ("minus_one", -1),
        ("int64_max", 2**63 - 1),
        ("big_int", 2**200 + 7),
        ("big_negative_int", -(2**100)),
        ("float_one", 1.0),
        ("float_zero", 0.0),
        ("float_negative_zero", -0.0),
        ("float_inf", float("inf")),
        ("float_pi", 3.141592653589793),
        ("complex", 1 + 2j),
        ("empty_str", ""),
        ("str_one", "1"),
        ("str_unicode", "naïve ☃ 日本"),
        ("str_surrogate", "\udcff"),
        ("empty_bytes", b""),
        ("bytes", b"\x00\x01abc"),
        ("bytearray", bytearray(b"abc")),
        ("memoryview", memoryview(b"abc")),
        ("empty_tuple", ()),
        ("tuple", (1, "a", None)),
        ("list", [1, "a", None]),
        ("nested", [[1, 2], (3, [4, {"k": 5}])]),
        ("empty_dict", {}),
        ("dict", {"b": 2, "a": 1}),
        ("dict_mixed_keys", {1: "x", "1": "y", (1,): "z"}),
        ("set", {3, 1, 2}),
        ("frozenset", frozenset({"a", "b"})),
        ("date", datetime.date(2024, 2, 29)),
        ("datetime_naive", datetime.datetime(2024, 1, 2, 3, 4, 5, 6)),
        ("datetime_utc", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
        ("time", datetime.time(12, 30)),
        ("timedelta", datetime.timedelta(days=1, seconds=2, microseconds=3)),
        ("decimal_1_0", decimal.Decimal("1.0")),
        ("decimal_1_00", decimal.Decimal("1.00")),
        ("fraction", fractions.Fraction(1, 3)),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("range", range(0, 10, 2)),
        ("slice", slice(1, None, 2)),
        ("path", pathlib.PurePosixPath("/data/run/1.csv")),
        ("enum", Color.RED),
        ("dataclass", Point(1, 2.5)),
        ("namedtuple", Pair(1, "x")),
        ("function", len),
        ("class", int),
    ]


# Generated once from the table above and pinned deliberately (see the module docstring).
GOLDEN = {
    "none": "626d368fe0e74b4f1a038927df1311d6",
    "ellipsis": "97e7cfc7dc4fb5768107baec7f33bebf",
    "true": "1d33c0bd3511c80d20948828081ddcb4",
    "false": "ccebad3393972e4a79bf233aa9bae29f",
    "zero": "1c7a1d5059bc77218ad2c0e635141f8a",
    "one": "5c0fabed007821c11267cbb5dcaed171",
    "minus_one": "1e0fa58c1f9e577b92f9fc5d04ac20b3",
    "int64_max": "9bb06e84b098bd5aa1acbf4aa0023366",
    "big_int": "0583066cb3c11104910116010900968b",
    "big_negative_int": "59c263f667a4a3e6d75ea2c98d913700",
    "float_one": "dfb9c18a60c46aba610be337e70fece0",
    "float_zero": "116d0d22cc8173ec5f6531dcc0133311",
    "float_negative_zero": "f6b43928ce5e5192820ab6b29963bd6b",
    "float_inf": "7a8db524dbae2e094b793d59b1f88687",
    "float_pi": "afe5f23b844cb087ed4937ba3c684471",
    "complex": "18241665f5512a88f22cbdad161e5be9",
    "empty_str": "85fefc6f12f345b396720846b631026c",
    "str_one": "3400a47faadb8b004fd345b3f48de741",
    "str_unicode": "43e51ed04f226b47d68dff22e6216b10",
    "str_surrogate": "c1b2282d2cbe4f386effb0ad660bb33e",
    "empty_bytes": "4fe339cfb66d6995b8acade7ca3c1e28",
    "bytes": "08b005d4662baaa6abfcc9c114167dce",
    "bytearray": "d9e3f6caf52f95e03f9f76378fb71b4e",
    "memoryview": "71252ec0922d27252485346e31883b35",
    "empty_tuple": "41430a3e6893b21f6e4daf1556cf5c23",
    "tuple": "13ac72063f573fc953c49a09616f5960",
    "list": "5c5cff84144a1f81e2c697beab3cf3f9",
    "nested": "0ff96b6713a170a6e4475067d8a809c3",
    "empty_dict": "301159136ebeac945bdfca491c8b7de7",
    "dict": "29a96669bbd8936fc01ddb3a008909d7",
    "dict_mixed_keys": "654a5d77158026e77aa36de91c1b4a48",
    "set": "0619e5b6ff21a7799a167f25912a97e7",
    "frozenset": "8807b73ca8f3826c2b4af2d218a4a2dc",
    "date": "5e00dda2d96de0584b2b929679021ee8",
    "datetime_naive": "793eaec7376b90ed99e84514d34c8afb",
    "datetime_utc": "95925dd46296545aee49efb203ca1d38",
    "time": "53ff8ace6a151b5e190234afd20a0f38",
    "timedelta": "6b55e36a7ac790455845cfa8f660e1c6",
    "decimal_1_0": "da064c9e49d8463f6a2775a1c455e5b3",
    "decimal_1_00": "8c57adb32955d3a9c152f1f1f98bf8e7",
    "fraction": "ca0a3cf1e27690f6b0b5a94fbe4f624e",
    "uuid": "4d536159eb5665ffe5e7acdaa1174a9e",
    "range": "e044662b4ad22cb84d08a2b2fd3421b1",
    "slice": "0fa334b108aa419063fb6afa9c7d3763",
    "path": "efeed564f8df354c6c7abc093334dd5b",
    "enum": "a7e232a684ccc0f96dcce1e52a39139e",
    "dataclass": "f2ebb07346fdc1afb767c0aff9ec012b",
    "namedtuple": "b920d9e903bef3b711540675c055185b",
    "function": "747b8e2b2c59b7006b2f446ae37b2b4b",
    "class": "97b329779e1645e90625162a970653b2",
}
LOOKUP_GOLDEN = "76629b8d62f974b1ed05c3de7a2e8da5"


@pytest.mark.parametrize(("label", "value"), golden_values(), ids=[v[0] for v in golden_values()])
def test_golden_digest(label: str, value: object) -> None:
    assert digest(value) == GOLDEN[label]


def test_golden_table_is_large_and_distinct() -> None:
    assert len(GOLDEN) >= 40
    assert len(set(GOLDEN.values())) == len(GOLDEN)


def test_lookup_key_golden() -> None:
    # pins the key layout of SPEC section 3 (name, module, version, code digest, pairs)
    key = lookup_key("f", "m", None, None, [("a", digest(1)), ("b", digest("x"))])
    assert key == LOOKUP_GOLDEN
    assert KeyMaker("f", "m", None, None).key([("a", digest(1)), ("b", digest("x"))]) == key


def test_digests_do_not_depend_on_hash_seed() -> None:
    code = (
        "import importlib.util, json, sys\n"
        "spec = importlib.util.spec_from_file_location('g', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['g'] = m\n"
        "spec.loader.exec_module(m)\n"
        "from fleche import digest\n"
        "print(json.dumps({k: digest(v) for k, v in m.golden_values()}))\n"
    )
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code, __file__],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(done.stdout) == GOLDEN
