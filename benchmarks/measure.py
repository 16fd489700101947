"""Measuring tools: wall time over repeats, counted FLOPs, peak extra RAM, machine facts.

Peak extra RAM is the growth of the process's resident set during one call:
the kernel's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` just before the call, freed heap is returned to the
system first (``malloc_trim``), and the extra RAM is ``VmHWM`` after the call
minus ``VmRSS`` before it. Python's ``tracemalloc`` does not see PyTorch's
allocations, hence the kernel's counters. Where ``clear_refs`` is not writable,
``ru_maxrss`` is used instead and only growth beyond the earlier peak is seen
(the JSON says which method was used).
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.flops import FlopCount

#: The issue's budget of extra RAM for one call, "0.5 GB", in MiB (a little stricter).
RAM_LIMIT_MB = 500.0


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MB
    except OSError:
        return None
    return None


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size to the current one
        return True
    except OSError:
        return False


class PeakRAM:
    """Context manager: ``.extra_mb`` is the peak resident-set growth inside the block."""

    def __enter__(self) -> PeakRAM:
        _trim()
        self.reset = _reset_peak()
        self.method = "VmHWM after clear_refs" if self.reset else "ru_maxrss"
        self.before = _status_mb("VmRSS") or _maxrss_mb()
        self.maxrss_before = _maxrss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.reset:
            peak = _status_mb("VmHWM") or _maxrss_mb()
        else:
            peak = max(_maxrss_mb(), self.maxrss_before)
        self.extra_mb = max(0.0, peak - self.before)


@dataclass
class Measurement:
    """One measured call: seconds of each timed repeat, counted FLOPs, peak extra RAM."""

    seconds: list[float] = field(default_factory=list)
    flop: int = 0
    extra_ram_mb: float = 0.0
    ram_method: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds_median": self.median,
            "seconds_min": self.best,
            "seconds": self.seconds,
            "repeats": len(self.seconds),
            "gflop": self.flop / 1e9,
            "extra_ram_mb": self.extra_ram_mb,
        }


def measure(fn: Callable[[], Any], repeats: int, *, count: bool = True) -> Measurement:
    """Call ``fn`` once to count its FLOPs and peak extra RAM (the first call of a
    method, as a student makes it), then ``repeats`` more times, timed.

    With ``repeats=0`` the first call is timed as well (for the expensive runs).
    """
    m = Measurement()
    with PeakRAM() as ram:
        start = time.perf_counter()
        if count:
            with FlopCount() as fc:
                fn()
            m.flop = fc.total
        else:
            fn()
        first = time.perf_counter() - start
    m.extra_ram_mb, m.ram_method = ram.extra_mb, ram.method
    if repeats == 0:
        m.seconds = [first]
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        m.seconds.append(time.perf_counter() - start)
    return m


def paired_rounds(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Time several calls round-robin: each round runs every call once, in turn.

    A ratio of two calls is then taken per round, between measurements made seconds apart,
    so a machine that slows down or speeds up (a neighbour's job, thermal limits) moves both
    alike; its median over rounds and spread say how far to trust it.

    Args:
        fns: ``{name: call}``; each is called once before the rounds (warm-up, not timed).
        rounds: the number of rounds.

    Returns:
        ``{name: [seconds of round 1, round 2, ...]}``.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_summary(per_round: list[float], limit: float, kind: str) -> dict[str, Any]:
    """The median of per-round ratios, their spread, and whether the rounds agree on a target.

    Args:
        per_round: one ratio per round.
        limit: the target's limit.
        kind: ``"max"`` (the ratio must stay below ``limit``) or ``"min"`` (above it).

    Returns:
        ``{"median", "low", "high", "rounds", "agree"}``: ``agree`` is False when some rounds
        meet the target and others do not (the spread is too wide to judge).
    """
    met = [(r <= limit) if kind == "max" else (r >= limit) for r in per_round]
    return {
        "median": statistics.median(per_round),
        "low": min(per_round),
        "high": max(per_round),
        "rounds": list(per_round),
        "agree": all(met) or not any(met),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []
