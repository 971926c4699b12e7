"""Benchmarks shared by ``dlaccel bench`` and the pytest-benchmark suite in ``benchmarks/``."""

from __future__ import annotations

from .record import PEER, TOLERANCE, Result, compare_outputs, load_torch
from .runner import SCHEMA, resolve_targets, run
from .timing import Timing, first_call, measure, measure_limits
from .workloads import GROUPS, PROFILES, WORKLOADS, Case, Workload, select_workloads

__all__ = [
    "GROUPS",
    "PEER",
    "PROFILES",
    "SCHEMA",
    "TOLERANCE",
    "WORKLOADS",
    "Case",
    "Result",
    "Timing",
    "Workload",
    "compare_outputs",
    "first_call",
    "load_torch",
    "measure",
    "measure_limits",
    "resolve_targets",
    "run",
    "select_workloads",
]
