"""The request metrics as plain-Python aggregates, one writer (`metrics.Metrics.observe`),
read through copies at scrape time (`exposition`). No prometheus-client here."""

from __future__ import annotations

import math
import time

CIRCUIT_STATES = ("closed", "open", "half_open")
HEALTH_WORDS = ("up", "degraded", "down", "unknown")


class Counter:
    """A labelled counter as plain dicts: label tuple -> value, and -> created time."""

    __slots__ = ("created", "doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        """The slow path of `Metrics.observe` (first sight of ``key``), and for tests."""
        values = self.values
        if key not in values:
            self.created[key] = time.time()  # before the value: see `family`
            values[key] = 0.0
        values[key] += amount


class Histogram:
    """A labelled histogram as plain lists: label tuple -> [bucket counts..., sum].

    A cell holds one count per bucket (not cumulative; the last is ``+Inf``)
    followed by the sum of the observed values; ``_count`` is the sum of the
    bucket counts, so a cell copied whole is always self-consistent.
    """

    __slots__ = ("bounds", "cells", "created", "doc", "labels", "name")

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.bounds = (*buckets, math.inf)  # as prometheus-client adds +Inf
        self.cells: dict[tuple[str, ...], list[float]] = {}
        self.created: dict[tuple[str, ...], float] = {}

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """The slow path of `Metrics.observe` (first sight of ``key``)."""
        cell = self.cells.get(key)
        if cell is None:
            self.created[key] = time.time()  # before the cell: see `family`
            cell = self.cells[key] = [0.0] * (len(self.bounds) + 1)
        return cell
