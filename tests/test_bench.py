"""The benchmark machinery (dlaccel.bench): workloads agree across backends, checks catch wrong
results before timing, timing synchronizes, the report has its documented fields."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

import dlaccel
from dlaccel import bench
from dlaccel.backends.numpy_backend import NumpyBackend
from dlaccel.bench.timing import Timing

RESULT_FIELDS = {
    "workload", "group", "backend", "unit", "size", "measured_size", "extrapolation", "first_call_s", "median_s",
    "q1_s", "q3_s", "min_s", "max_s", "samples", "calls_per_sample", "check", "rate", "rate_unit", "limit",
    "share_of_limit", "speedup_vs_loops", "speedup_vs_numpy", "overhead_us", "error",
}
REPORT_FIELDS = {"schema", "created", "profile", "dtype", "threads", "system", "limits", "peer", "workloads",
                 "results", "notes", "wall_s"}


class WrongReluBackend(NumpyBackend):
    """A backend with a bug: relu passes negative values through."""

    name = "wrong_relu"

    def activation_forward(self, Z, activation):
        if activation == "relu":
            return Z.copy()
        return super().activation_forward(Z, activation)


class Counting:
    """A case that records the order of step and sync calls."""

    def __init__(self):
        self.events = []

    def case(self):
        return bench.Case(step=lambda: self.events.append("step") or {"A": np.ones((1, 1))},
                          outputs=lambda r: r, sync=lambda: self.events.append("sync"))


@pytest.fixture(scope="module")
def tiny_report():
    """Every workload, every available backend and the peer, at tiny sizes."""
    return bench.run(profile="tiny", dtype="float32")


def test_report_has_the_documented_fields_and_is_strict_json(tiny_report):
    assert REPORT_FIELDS <= set(tiny_report)
    assert tiny_report["schema"] == bench.SCHEMA
    for row in tiny_report["results"]:
        assert RESULT_FIELDS <= set(row)
    json.dumps(tiny_report, allow_nan=False)


def test_every_backend_and_the_peer_agree_with_numpy_on_every_workload(tiny_report):
    rows = tiny_report["results"]
    assert {r["workload"] for r in rows} == set(bench.WORKLOADS)
    available = [n for n, s in dlaccel.available_backends().items() if s["available"]]
    expected = set(available) | ({"torch"} if tiny_report["peer"]["available"] else set())
    assert {r["backend"] for r in rows} == expected
    failures = [(r["workload"], r["backend"], r["error"]) for r in rows if r["error"]]
    assert failures == []
    for r in rows:
        assert r["check"]["passed"] and r["check"]["max_rel_error"] <= r["check"]["tolerance"]
        assert r["median_s"] > 0 and r["first_call_s"] > 0 and r["q1_s"] <= r["median_s"] <= r["q3_s"]


def test_speedups_are_ratios_of_medians_in_the_same_run(tiny_report):
    by = {(r["workload"], r["backend"]): r for r in tiny_report["results"]}
    for (workload, _), r in by.items():
        if r["unit"] == "overhead":
            assert r["overhead_us"] is not None and r["speedup_vs_numpy"] is None
            continue
        assert r["speedup_vs_numpy"] == pytest.approx(by[(workload, "numpy")]["median_s"] / r["median_s"])
        assert r["speedup_vs_loops"] == pytest.approx(by[(workload, "loops")]["median_s"] / r["median_s"])
        assert r["rate"] > 0 and r["share_of_limit"] == pytest.approx(r["rate"] / r["limit"])


def test_loops_rows_run_smaller_and_say_by_how_much(tiny_report):
    for r in tiny_report["results"]:
        workload = bench.WORKLOADS[r["workload"]]
        if r["backend"] != "loops" or workload.scale is None:
            assert r["extrapolation"] == 1.0 and r["measured_size"] == r["size"]
            continue
        assert r["extrapolation"] == r["size"][workload.scale] / r["measured_size"][workload.scale]


def test_machine_limits_are_measured(tiny_report):
    host = tiny_report["limits"]["host"]
    assert math.isfinite(host["gemm_gflops"]) and host["gemm_gflops"] > 0
    assert math.isfinite(host["copy_gbps"]) and host["copy_gbps"] > 0
    assert host["dtype"] == "float32"


def test_a_wrong_backend_fails_its_check_and_is_not_timed():
    report = bench.run([WrongReluBackend(), "numpy"], bench.select_workloads(["relu_fwd", "dispatch"]), "tiny")
    wrong = [r for r in report["results"] if r["backend"] == "wrong_relu"]
    assert len(wrong) == 2
    for r in wrong:
        assert r["error"].startswith("check failed") and not r["check"]["passed"]
        assert r["median_s"] is None and r["samples"] == 0
    assert all(r["error"] is None for r in report["results"] if r["backend"] == "numpy")


def test_compare_outputs_rejects_shape_dtype_and_nonfinite():
    ref = {"A": np.ones((2, 3), np.float32)}
    assert bench.compare_outputs({"A": np.ones((2, 3), np.float32)}, ref, np.float32)["passed"]
    assert "shape" in bench.compare_outputs({"A": np.ones((3, 2), np.float32)}, ref, np.float32)["message"]
    assert "dtype" in bench.compare_outputs({"A": np.ones((2, 3), np.float64)}, ref, np.float32)["message"]
    bad = np.ones((2, 3), np.float32)
    bad[0, 0] = np.nan
    assert "NaN" in bench.compare_outputs({"A": bad}, ref, np.float32)["message"]
    assert "missing" in bench.compare_outputs({}, ref, np.float32)["message"]


def test_compare_outputs_widens_tolerance_only_where_numpy_itself_rounds():
    truth = {"db": np.array([[1e-7]])}
    ref = {"db": np.array([[1.1e-7]], np.float32)}  # NumPy float32 is 10 % off: a cancelling sum
    assert bench.compare_outputs({"db": np.array([[1.2e-7]], np.float32)}, ref, np.float32, truth)["passed"]
    assert not bench.compare_outputs({"db": np.array([[-1e-7]], np.float32)}, ref, np.float32, truth)["passed"]


def test_measure_synchronizes_before_every_clock_read_and_takes_enough_samples():
    counter = Counting()
    case = counter.case()
    _, result = bench.first_call(case)
    assert counter.events == ["step", "sync"]
    timing = bench.measure(case, min_samples=4, budget_s=0.0)
    assert len(timing.samples_s) >= 4
    # One warm-up call, then every sample is `number` steps followed by one sync.
    assert counter.events[2:4] == ["step", "sync"]
    sample = ["step"] * timing.number + ["sync"]
    assert counter.events[4:] == sample * len(timing.samples_s)


def test_overhead_is_the_median_of_paired_differences():
    timing = Timing(samples_s=[3.0, 10.0, 4.0], number=1, baseline_s=[1.0, 1.0, 2.0])
    assert timing.overhead_s == 2.0


def test_select_workloads_by_name_and_group_in_canonical_order():
    names = [w.name for w in bench.select_workloads(["dispatch", "elementwise", "dot"])]
    assert names[0] == "dot" and names[-1] == "dispatch"
    assert set(names[1:-1]) == set(bench.GROUPS["elementwise"])
    assert len(bench.select_workloads(None)) == len(bench.WORKLOADS)


@pytest.mark.parametrize("bad", [["nope"], ["dot", "elementwize"]])
def test_unknown_workload_names_the_known_ones(bad):
    with pytest.raises(dlaccel.InputError, match="known workloads.*dot"):
        bench.select_workloads(bad)


def test_run_rejects_bad_arguments_before_running():
    with pytest.raises(dlaccel.InputError, match="dtype"):
        bench.run(["numpy"], profile="tiny", dtype="int8")
    with pytest.raises(dlaccel.InputError, match="profile"):
        bench.run(["numpy"], profile="huge")
    with pytest.raises(dlaccel.UnknownBackendError, match="known backends"):
        bench.run(["numpy", "fortran"], profile="tiny")


def test_without_torch_the_peer_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    report = bench.run(["numpy", "torch"], bench.select_workloads(["dot"]), "tiny")
    assert [r["backend"] for r in report["results"]] == ["numpy"]
    assert not report["peer"]["available"]
    assert any("PyTorch is not installed" in note for note in report["notes"])


@pytest.mark.parametrize("profile", bench.PROFILES)
def test_every_workload_has_every_profile_and_a_positive_work_count(profile):
    for workload in bench.WORKLOADS.values():
        size = workload.size(profile)
        assert workload.size(profile, "loops").keys() == size.keys()
        if workload.unit != "overhead":
            assert workload.work(size, np.dtype(np.float32)) > 0
