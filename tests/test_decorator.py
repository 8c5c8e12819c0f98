"""The decorator suite: every option and helper, run over every kind of cache (``any_cache``)."""

from __future__ import annotations

import asyncio
import functools
import os
import pickle
import subprocess
import sys
import threading
import warnings

import pytest

from fleche import D, Ignored, Required, UsageError, cache, digest, fleche
from fleche.call import Call, QueryCall
from fleche.errors import UnstorableResultWarning


class Counter:
    """Counts how often a function body really ran."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def test_hit_after_miss_and_none_cached(any_cache) -> None:
    ran = Counter()

    @fleche
    def f(a, b="x"):
        ran()
        return None if a == 0 else {"a": a, "b": b}

    assert f(1, "a") == {"a": 1, "b": "a"}
    assert f(1, "a") == {"a": 1, "b": "a"}
    assert f(1, b="a") == {"a": 1, "b": "a"}
    assert f(a=1, b="a") == {"a": 1, "b": "a"}
    assert ran.n == 1
    assert f(0) is None
    assert f(0) is None
    assert ran.n == 2


def test_defaults_are_applied_before_keying(any_cache) -> None:
    @fleche
    def f(a, b=2):
        return a + b

    assert f.digest(1) == f.digest(1, 2) == f.digest(a=1, b=2)
    assert f.digest(1) != f.digest(1, 3)


def test_exceptions_are_not_cached(any_cache) -> None:
    ran = Counter()

    @fleche
    def f(x):
        ran()
        raise ValueError(x)

    for _ in range(2):
        with pytest.raises(ValueError):
            f(1)
    assert ran.n == 2
    assert not f.contains(1)


def test_helpers(any_cache) -> None:
    ran = Counter()

    @fleche
    def f(a, b=1):
        ran()
        return a * b

    call = f.call(3)
    assert isinstance(call, Call)
    assert call.arguments == {"a": 3, "b": 1}
    assert f.digest(3) == call.lookup_key()
    assert not f.contains(3)
    with pytest.raises(KeyError):
        f.load(3)
    assert f(3) == 3
    assert f.contains(3)
    assert f.load(3) == 3
    assert f.fleche.load(3) == 3
    assert f.rerun(3) == 3
    assert ran.n == 2
    f.evict(3)
    assert not f.contains(3)
    with pytest.raises(KeyError):
        f.evict(3)


def test_query_by_arguments_and_wildcards(any_cache) -> None:
    @fleche
    def f(a, b=None):
        return (a, b)

    f(1, "x")
    f(1, "y")
    f(2, None)
    assert f.query().count() == 3
    assert f.query(1).count() == 2
    assert f.query(b="y").only().result == (1, "y")
    assert f.query(b=D(None)).only().arguments["a"] == 2
    assert f.query(D(digest(1))).count() == 2
    assert f.query(3).count() == 0
    assert sorted(f.query(1).results()) == [(1, "x"), (1, "y")]


def test_query_does_not_see_other_functions(any_cache) -> None:
    @fleche
    def f(a):
        return a

    @fleche
    def g(a):
        return a

    f(1)
    g(1)
    assert f.query().count() == 1
    assert cache().query(QueryCall()).count() == 2


def test_version_enters_the_key(any_cache) -> None:
    def body(x):
        return x

    v1 = fleche(version=1)(body)
    v2 = fleche(version=2)(body)
    unhashed = fleche(version=2, hash_version=False)(body)
    assert v1.digest(1) != v2.digest(1)
    assert unhashed.digest(1) == fleche(body).digest(1)
    v1(1)
    assert v1.query().count() == 1
    assert v2.query().count() == 0
    assert unhashed.query().count() == 1  # queries find calls whatever hash_version says


def test_hash_module_false_ignores_the_module(any_cache) -> None:
    def body(x):
        return x

    a = fleche(hash_module=False)(body)
    b_body = functools.wraps(body)(lambda x: x)
    b_body.__module__ = "elsewhere"
    b_body.__qualname__ = body.__qualname__
    b = fleche(hash_module=False)(b_body)
    assert a.digest(1) == b.digest(1)
    assert fleche(body).digest(1) != a.digest(1)


def test_hash_code_tracks_the_body(any_cache) -> None:
    def make(k):
        def f(x):
            return x + k

        return fleche(hash_code=True)(f)

    assert make(1).digest(1) == make(1).digest(1)
    assert make(1).digest(1) != make(2).digest(1)

    def g(x):
        return x

    assert fleche(g).digest(1) != fleche(hash_code=True)(g).digest(1)


def test_ignore_and_require(any_cache) -> None:
    @fleche(ignore=["verbose"])
    def f(x, verbose=False):
        return x

    assert f.digest(1, verbose=True) == f.digest(1, verbose=False)

    @fleche
    def g(x, log: Ignored[object] = None):
        return x

    assert g.digest(1, log=print) == g.digest(1)

    @fleche(require=["x"])
    def h(x, y=0, z=0):
        return x

    assert h.digest(1, 2, 3) == h.digest(1)
    assert h.digest(1) != h.digest(2)

    @fleche
    def k(x: Required[int], y=0):
        return x

    assert k.digest(1, 5) == k.digest(1, 6)
    with pytest.raises(UsageError, match="nope"):
        fleche(ignore=["nope"])(lambda x: x)


def test_metadata_is_stored_but_never_keyed(any_cache) -> None:
    from fleche import Runtime, tags

    @fleche(meta=[Runtime()])
    def f(x):
        return x

    with tags(experiment="a"):
        key = f.digest(1)
        f(1)
    with tags(experiment="b"):
        assert f.digest(1) == key
    stored = f.query(1).only()
    assert stored.metadata["tags"] == {"experiment": "a"}
    assert stored.metadata["runtime"]["duration"] >= 0
    assert f.query(metadata={"tags": {"experiment": "a"}}).count() == 1
    assert f.query(metadata={"tags": {"experiment": "b"}}).count() == 0


def test_cache_if_skips_rejected_results(any_cache) -> None:
    ran = Counter()

    @fleche(cache_if=lambda r: r is not None)
    def f(x):
        ran()
        return None if x < 0 else x

    f(-1)
    f(-1)
    f(1)
    f(1)
    assert ran.n == 3


def test_isolate_returns_private_copies(any_cache) -> None:
    @fleche(isolate=True)
    def f(x):
        return [x]

    first = f(1)
    first.append("mutated")
    assert f(1) == [1]


def test_store_arguments_false_keeps_digests_only(any_cache) -> None:
    @fleche(store_arguments=False)
    def f(x):
        return 1

    f("big input")
    stored = f.query().only()
    assert stored.record.arguments["x"] == digest("big input")
    with pytest.raises(KeyError):
        stored.arguments["x"]


def test_arguments_are_stored_and_load_lazily(any_cache) -> None:
    @fleche
    def f(x, y):
        return x + y

    f(2, 3)
    stored = f.query().only()
    assert dict(stored.arguments) == {"x": 2, "y": 3}
    assert stored.result == 5
    assert stored.fetch().arguments == {"x": 2, "y": 3}


def test_digest_arguments_stand_for_stored_values(any_cache) -> None:
    ran = Counter()

    @fleche
    def f(x):
        ran()
        return x * 2

    f(21)
    full = digest(21)
    assert f(D(full)) == 42
    assert ran.n == 1
    assert f(D(full[:8])) == 42  # a prefix is expanded against the cache's values

    @fleche
    def g(x):
        ran()
        return x + 1

    assert g(D(full)) == 22  # computed with the stored value the digest names
    assert g(21) == 22
    assert ran.n == 2


def test_unstorable_result_is_returned_with_a_warning(any_cache) -> None:
    @fleche
    def f(x):
        return threading.Lock()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = f(1)
    assert hasattr(result, "acquire")
    assert any(issubclass(w.category, UnstorableResultWarning) for w in caught)
    assert not f.contains(1)


def test_undigestable_argument_names_its_place(any_cache) -> None:
    @fleche
    def f(cfg):
        return 1

    with pytest.raises(TypeError, match=r"arguments\['cfg'\]\['lock'\]"):
        f({"lock": threading.Lock()})


def test_recursion_works(any_cache) -> None:
    @fleche
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(80) == 23416728348467685
    assert fib.query().count() == 81


def test_rerun_recomputes_nested_calls(any_cache) -> None:
    inner_ran = Counter()

    @fleche
    def inner(x):
        inner_ran()
        return x

    @fleche
    def outer(x):
        return inner(x) + 1

    outer(1)
    outer(1)
    assert inner_ran.n == 1
    outer.rerun(1)
    assert inner_ran.n == 2


class Model:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    @fleche
    def predict(self, x):
        return self.scale * x

    @classmethod
    @fleche
    def build(cls, scale):
        return scale

    @staticmethod
    @fleche
    def helper(x):
        return -x

    @fleche
    @classmethod
    def build2(cls, scale):
        return scale * 2


def test_methods_static_and_class_methods(any_cache) -> None:
    m2, m3 = Model(2), Model(3)
    assert m2.predict(5) == 10
    assert m3.predict(5) == 15
    assert Model(2).predict.contains(5)  # self is digested by value
    assert not Model(4).predict.contains(5)
    assert Model.build(4) == 4 and Model.build(4) == 4
    assert Model.helper(2) == -2
    assert Model.build2(3) == 6
    assert Model.predict.query().count() == 2


def test_partial_objects(any_cache) -> None:
    def power(base, exp):
        return base**exp

    square = fleche(functools.partial(power, exp=2))
    assert square(3) == 9
    assert square.contains(3)
    assert square.digest(3) == fleche(power).digest(3, 2)


def test_async_functions_cache_the_awaited_result(any_cache) -> None:
    ran = Counter()

    @fleche
    async def f(x):
        ran()
        await asyncio.sleep(0)
        return x * 2

    async def main():
        return [await f(1), await f(1), await f(2)]

    assert asyncio.run(main()) == [2, 2, 4]
    assert ran.n == 2


def test_generator_functions_are_refused() -> None:
    def gen():
        yield 1

    with pytest.raises(UsageError, match="generator"):
        fleche(gen)


def test_wrapper_keeps_identity_and_signature() -> None:
    import inspect

    @fleche
    def documented(a: int, b: str = "x") -> int:
        """Docs."""
        return a

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs."
    assert documented.__wrapped__(1) == 1
    assert list(inspect.signature(documented).parameters) == ["a", "b"]


def test_per_function_cache_option(any_cache) -> None:
    from fleche.config import cache_from_url

    private = cache_from_url("memory://")

    @fleche(cache=private)
    def f(x):
        return x

    f(1)
    assert private.contains(f.digest(1))
    assert not any_cache.contains(f.digest(1))


def test_bare_cache_decorates_functions(any_cache) -> None:
    @cache
    def f(x):
        return x + 1

    assert f(1) == 2
    assert f.contains(1)


def test_disable_turns_every_cache_void(tmp_path) -> None:
    # FLECHE_DISABLE is read when fleche is imported: check it in a fresh process
    script = tmp_path / "disabled.py"
    script.write_text(
        "from fleche import fleche, cache\n"
        "ran = []\n"
        "@fleche\n"
        "def f(x):\n"
        "    ran.append(x)\n"
        "    return x\n"
        "with cache('memory'):\n"
        "    f(1); f(1)\n"
        "    print(len(ran), f.contains(1), type(cache()).__name__)\n"
    )
    env = {**os.environ, "FLECHE_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["2", "False", "VoidCache"]


def test_bound_wrapper_carries_cache_and_is_picklable(any_cache) -> None:
    bound = module_level.bind()
    other = pickle.loads(pickle.dumps(bound))
    assert other(4) == 16
    assert bound(5) == 25
    assert module_level.contains(5)


@fleche
def module_level(x):
    return x * x


def test_explain_says_why_it_misses(any_cache) -> None:
    @fleche
    def f(a, b):
        return a + b

    f(1, 2)
    assert f.explain(1, 2).stored
    why = f.explain(1, 3)
    assert not why.stored
    assert why.nearest[0].differing.keys() == {"b"}
    assert "differs in b" in str(why)


def test_threads_compute_a_missing_call_once(any_cache) -> None:
    ran = Counter()
    gate = threading.Barrier(8)

    @fleche
    def slow(x):
        ran()
        import time

        time.sleep(0.05)
        return x

    def worker():
        gate.wait()
        assert slow(1) == 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ran.n == 1


def test_lock_timeout_raises_or_computes_by_option(any_cache) -> None:
    from fleche.errors import LockTimeoutError, LockTimeoutWarning
    from fleche.storage.base import Intent

    ran = Counter()

    def body(x):
        ran()
        return x

    strict = fleche(body)
    lenient = fleche(on_lock_timeout="compute")(body)
    key = strict.digest(1)
    calls = getattr(any_cache, "calls", None)
    previous = getattr(calls, "lock_timeout", None)
    if calls is not None:
        calls.lock_timeout = 0.2
    holder_ready, release = threading.Event(), threading.Event()

    def hold():
        with any_cache._operation_context(key, intent=Intent.COMPUTE):
            holder_ready.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holder_ready.wait(5)
    try:
        with pytest.raises(LockTimeoutError):
            strict(1)
        with pytest.warns(LockTimeoutWarning):
            assert lenient(1) == 1
        assert ran.n == 1
        assert not strict.contains(1)  # computed without the lock: not stored
    finally:
        release.set()
        thread.join()
        if calls is not None:
            calls.lock_timeout = previous
    with pytest.raises(UsageError):
        fleche(on_lock_timeout="maybe")(body)
