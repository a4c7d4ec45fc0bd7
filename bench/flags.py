"""Bounded numbers for the benchmarks' flags: a bad value is one line naming the accepted range."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def bounded(kind: type[int] | type[float], low: float, high: float, *, above: bool = False,
            what: str = "a number", why: str = "") -> Callable[[str], int | float]:
    """A parser for ``kind`` in [low, high] (``above``: in (low, high]); ``why`` explains the range."""
    interval = f"{'(' if above else '['}{low:g}, {high:g}]"

    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        if not ((low < number if above else low <= number) and number <= high):  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {what} in {interval}{why}, got {value!r}")
        return number
    return parse


def positive(kind: type[int] | type[float], high: float) -> Callable[[str], int | float]:
    return bounded(kind, 0, high, above=True, what="a positive number")
