"""Lock rules of SPEC section 4: exact per key, reentrant per owner, timeouts, async waiting."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fleche import LockTimeoutError
from fleche.storage import Intent, SerializingMixin
from fleche.storage.locking import LockTable
from fleche.storage.memory import CallMemory

K1, K2 = "1" * 32, "2" * 32


def test_reentrant_for_the_same_thread_and_write_inside_compute() -> None:
    storage = CallMemory()
    with storage._operation_context(K1, intent=Intent.COMPUTE):
        with storage._operation_context(K1, intent=Intent.WRITE):
            with storage._operation_context(K1, intent=Intent.COMPUTE):
                pass
    assert len(storage._lock_table()) == 0


def test_other_threads_wait_and_other_keys_do_not() -> None:
    storage = CallMemory()
    storage.lock_timeout = 0.2
    results = {}

    def try_key(key, name):
        try:
            with storage._operation_context(key, intent=Intent.WRITE):
                results[name] = "got"
        except LockTimeoutError:
            results[name] = "timeout"

    with storage._operation_context(K1, intent=Intent.COMPUTE):
        threads = [
            threading.Thread(target=try_key, args=(K1, "same")),
            threading.Thread(target=try_key, args=(K2, "other")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == {"same": "timeout", "other": "got"}
    assert len(storage._lock_table()) == 0


def test_reads_take_no_lock() -> None:
    storage = CallMemory()
    storage.lock_timeout = 0.1
    done = []
    with storage._operation_context(K1, intent=Intent.WRITE):
        t = threading.Thread(target=lambda: done.append(storage.contains(K1)))
        t.start()
        t.join()
    assert done == [False]


def test_lock_table_times_out_then_recovers() -> None:
    table = LockTable()
    entry = table.acquire(K1, "a", 1)
    with pytest.raises(LockTimeoutError):
        table.acquire(K1, "b", 0.05)
    table.release(K1, entry)
    table.release(K1, table.acquire(K1, "b", 0.05))
    assert len(table) == 0


def test_async_waiting_does_not_block_the_loop() -> None:
    storage = CallMemory()
    ticks = []

    async def ticker():
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def holder():
        async with storage._async_operation_context(K1, intent=Intent.COMPUTE):
            await asyncio.sleep(0.08)

    async def waiter():
        await asyncio.sleep(0.005)
        async with storage._async_operation_context(K1, intent=Intent.COMPUTE):
            return "after"

    async def main():
        return await asyncio.gather(holder(), waiter(), ticker())

    _, result, _ = asyncio.run(main())
    assert result == "after"
    assert len(ticks) == 5
    assert ticks[-1] - ticks[0] < 0.07  # the loop kept running while the waiter waited


def test_tasks_are_distinct_owners() -> None:
    storage = CallMemory()
    storage.lock_timeout = 0.05

    async def hold_then_other_task():
        async with storage._async_operation_context(K1, intent=Intent.COMPUTE):

            async def other():
                async with storage._async_operation_context(K1, intent=Intent.COMPUTE):
                    return "acquired"

            with pytest.raises(LockTimeoutError):
                await asyncio.create_task(other())
            async with storage._async_operation_context(K1, intent=Intent.WRITE):
                return "reentered"

    assert asyncio.run(hold_then_other_task()) == "reentered"


class Serialized(SerializingMixin, CallMemory):
    """A storage whose operations are serialised."""


def test_serializing_mixin_ignores_compute() -> None:
    storage = Serialized()
    got = []
    with storage._operation_context(K1, intent=Intent.COMPUTE):
        t = threading.Thread(
            target=lambda: got.append(storage.contains(K2)), daemon=True
        )  # not blocked by the COMPUTE on K1
        t.start()
        t.join(1)
    assert got == [False]


def test_process_lock_taken_once_per_outermost_hold() -> None:
    events = []

    class Tracked(CallMemory):
        def _process_lock(self, key):
            class Lock:
                def __enter__(self_inner):
                    events.append("enter")

                def __exit__(self_inner, *exc):
                    events.append("exit")

            return Lock()

    storage = Tracked()
    with storage._operation_context(K1, intent=Intent.COMPUTE):
        with storage._operation_context(K1, intent=Intent.WRITE):
            pass
    assert events == ["enter", "exit"]
