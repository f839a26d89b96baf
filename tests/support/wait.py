"""Polling until a condition holds, with a deadline that names what it waited for."""

from __future__ import annotations

import asyncio
import time


async def until(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.05):
    """Polls ``predicate`` (sync or async) until it returns something truthy, and returns that; raises
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def wait_until(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.2):
    """The blocking form of :func:`until` (for synchronous tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
