"""Races between OS processes: each its own interpreter, Cosmos client and caches, as separate hosts are."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def race_in_processes(
    target: Callable[..., None], each_args: Sequence[tuple[Any, ...]], *, timeout: float
) -> list[Any]:
    """Runs `target(*args, barrier, outcomes)` in a spawned process per `args`: `target` lines up with the others
    at the barrier (one for all) and puts one outcome on the queue. Returns the outcomes in the order they came,
    once every process has exited cleanly."""
    context = multiprocessing.get_context("spawn")
    barrier, outcomes = context.Barrier(len(each_args)), context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, outcomes)) for args in each_args]
    for process in processes:
        process.start()
    reported = [outcomes.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return reported
