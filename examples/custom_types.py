"""Custom types as arguments: ``__digest__``, a registered hook, and what a bad hook does.

Run it with ``python examples/custom_types.py``. fleche digests dataclasses, numpy arrays and most
plain objects by itself; a ``__digest__`` method (or a hook for a class you do not own) says which
fields matter, so that a cache or a timestamp inside an object does not split the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fleche import DigestError, cache, digest, fleche
from fleche.digest import register, unregister


class Model:
    """A model whose results depend on its weights, not on its scratch cache or creation time."""

    def __init__(self, name: str, weights: tuple[float, ...]) -> None:
        self.name = name
        self.weights = weights
        self.created = time.time()  # differs for every instance
        self.scratch: dict[int, float] = {}  # filled while predicting

    def __digest__(self) -> tuple:
        # everything that can change a prediction, and nothing else (it must be injective)
        return (self.name, self.weights)


@fleche
def predict(model: Model, x: float) -> float:
    """An expensive prediction (here a polynomial)."""
    runs.append(x)
    return sum(w * x**i for i, w in enumerate(model.weights))


class Celsius:
    """A class from a library we do not own: no ``__digest__`` and a clock inside."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees
        self.read_at = time.time()


@fleche
def to_fahrenheit(t: Celsius) -> float:
    runs.append(t.degrees)
    return t.degrees * 9 / 5 + 32


@dataclass
class Config:
    layers: list


@fleche
def train(cfg: Config) -> int:
    return len(cfg.layers)


runs: list[float] = []


def main() -> None:
    with cache("memory"):
        print("1. __digest__: two instances with the same weights are one argument")
        a = Model("poly", (1.0, 2.0, 3.0))
        time.sleep(0.01)
        b = Model("poly", (1.0, 2.0, 3.0))
        b.scratch[0] = 1.0
        print(f"   predict(a, 2.0) = {predict(a, 2.0)}")
        print(f"   predict(b, 2.0) = {predict(b, 2.0)}  (served from the cache)")
        print(f"   digest(a) == digest(b): {digest(a) == digest(b)}; the body ran {len(runs)} time")

        print("2. a hook for a class we do not own")
        runs.clear()
        print(f"   without a hook, two readings of 20 C differ: "
              f"{digest(Celsius(20.0)) != digest(Celsius(20.0))}")  # fmt: skip
        register(Celsius, lambda t: t.degrees)
        first = to_fahrenheit(Celsius(20.0))
        second = to_fahrenheit(Celsius(20.0))
        print(f"   with register(Celsius, lambda t: t.degrees): {first} then {second}, "
              f"computed {len(runs)} time")  # fmt: skip

        print("3. a hook that is not injective serves wrong results")
        register(Celsius, lambda t: round(t.degrees))  # drops the decimals: 20.2 and 20.4 collide
        runs.clear()
        warm, warmer = to_fahrenheit(Celsius(20.2)), to_fahrenheit(Celsius(20.4))
        print(f"   to_fahrenheit(20.2) = {warm:.2f}, to_fahrenheit(20.4) = {warmer:.2f}  "
              f"(wrong: both are the first result; computed {len(runs)} time)")  # fmt: skip
        unregister(Celsius)

        print("4. what cannot be digested is named, with its place in the arguments")
        try:
            train(Config(layers=[16, 32, iter([64])]))
        except DigestError as e:
            print(f"   DigestError: {e}")


if __name__ == "__main__":
    main()
