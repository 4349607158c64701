"""Decoding the utterances of a batch in parallel threads (the numba search cores release the GIL)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_Result = TypeVar("_Result")


def default_threads() -> int:
    """Utterances decoded at once by default: torch's thread count (`torch.set_num_threads`)."""
    import torch

    return torch.get_num_threads()


def map_utterances(decode_one: Callable[[int], _Result], count: int, threads: int | None = None) -> list[_Result]:
    """[decode_one(0), …, decode_one(count - 1)], in order, with up to `threads` (default
    `default_threads()`) running at once; one thread, or one utterance, runs them in this thread."""
    workers = min(threads if threads is not None else default_threads(), count)
    if workers <= 1:
        return [decode_one(i) for i in range(count)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(decode_one, range(count)))
