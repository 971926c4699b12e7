"""The benchmark machinery (dlaccel.bench): workloads agree across backends, checks catch wrong
results before timing, timing synchronizes, the report has its documented fields."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import pytest

import dlaccel
from dlaccel import bench
from dlaccel.backends.numpy_backend import NumpyBackend
from dlaccel.bench.timing import Timing

RESULT_FIELDS = {
    "workload", "group", "backend", "unit", "size", "measured_size", "extrapolation", "first_call_s", "median_s",
    "q1_s", "q3_s", "min_s", "max_s", "samples", "calls_per_sample", "check", "rate", "rate_unit", "limit",
    "share_of_limit", "speedup_vs_loops", "speedup_vs_numpy", "overhead_us", "error", "pid",
    "gemm_flops", "min_bytes", "floor_s", "bound",
}
REPORT_FIELDS = {"schema", "created", "profile", "dtype", "threads", "isolation", "system", "limits", "peer",
                 "workloads", "results", "notes", "wall_s"}


class WrongReluBackend(NumpyBackend):
    """A backend with a bug: relu passes negative values through."""

    name = "wrong_relu"

    def activation_forward(self, Z, activation):
        if activation == "relu":
            return Z.copy()
        return super().activation_forward(Z, activation)


class RaisingBackend(NumpyBackend):
    """A backend whose relu raises: an ordinary error inside its child process."""

    name = "raising"

    def activation_forward(self, Z, activation):
        raise RuntimeError("relu exploded")


class CrashingBackend(NumpyBackend):
    """A backend whose linear_forward kills its process, as a segfault in compiled code would."""

    name = "crashing"

    def linear_forward(self, A_prev, W, b):
        os._exit(7)


class HangingBackend(NumpyBackend):
    """A backend whose relu never returns."""

    name = "hanging"

    def activation_forward(self, Z, activation):
        time.sleep(3600)


class FreshUpdateBackend(NumpyBackend):
    """A backend that honours update_parameters' contract by returning new arrays, not in place."""

    name = "fresh_update"

    def update_parameters(self, parameters, grads, learning_rate):
        return {k: p - learning_rate * grads["d" + k] for k, p in parameters.items()}


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


def test_rows_are_timed_in_a_fresh_process_per_backend(tiny_report):
    assert tiny_report["isolation"]["mode"] == "process"
    assert tiny_report["isolation"]["parent_pid"] == os.getpid()
    pids: dict[str, set] = {}
    for r in tiny_report["results"]:
        pids.setdefault(r["backend"], set()).add(r["pid"])
    assert all(len(p) == 1 for p in pids.values())  # one child per backend ...
    children = [p.pop() for p in pids.values()]
    assert len(set(children)) == len(children) and os.getpid() not in children  # ... each its own
    workers = tiny_report["isolation"]["workers"]
    assert set(workers) == set(pids)
    assert all(w["exit_codes"] == [0] and w["blas_threads"] == tiny_report["threads"] for w in workers.values())
    if tiny_report["peer"]["available"]:
        assert workers["torch"]["torch_threads"] == tiny_report["threads"] == tiny_report["peer"]["threads"]


def test_in_process_rows_are_timed_here():
    report = bench.run(["numpy"], bench.select_workloads(["dot"]), "tiny", isolate=False)
    assert report["isolation"]["mode"] == "in-process"
    assert [r["pid"] for r in report["results"]] == [os.getpid()]


def test_an_error_in_a_child_becomes_that_rows_error():
    report = bench.run([RaisingBackend(), "numpy"], bench.select_workloads(["dot", "relu_fwd"]), "tiny")
    rows = {(r["workload"], r["backend"]): r for r in report["results"]}
    assert rows["relu_fwd", "raising"]["error"] == "RuntimeError: relu exploded"
    assert rows["dot", "raising"]["error"] is None and rows["dot", "raising"]["median_s"] > 0
    assert rows["relu_fwd", "numpy"]["error"] is None


def test_a_crashed_child_becomes_a_row_error_and_a_fresh_child_runs_the_rest():
    report = bench.run([CrashingBackend()], bench.select_workloads(["dot", "relu_fwd"]), "tiny")
    dot, relu = report["results"]
    assert dot["workload"] == "dot" and "exit status 7" in dot["error"] and dot["median_s"] is None
    assert relu["error"] is None and relu["median_s"] > 0
    assert dot["pid"] != relu["pid"]
    assert report["isolation"]["workers"]["crashing"]["exit_codes"] == [7, 0]


def test_a_stalled_child_is_killed_and_its_row_says_so():
    report = bench.run([HangingBackend()], bench.select_workloads(["relu_fwd"]), "tiny", timeout_s=5)
    (row,) = report["results"]
    assert row["error"].startswith("timed out") and row["median_s"] is None


def test_an_interrupted_run_leaves_no_child_running():
    # In a notebook, Ctrl-C interrupts this process only: the child it was waiting on must not live on.
    children = []

    def say(message):
        if "(process" in message:
            children.append(int(message.rsplit(" ", 1)[1].rstrip(")")))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bench.run([HangingBackend()], bench.select_workloads(["relu_fwd"]), "tiny", progress=say)
    (pid,) = children
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)


def test_isolation_needs_a_backend_a_child_can_import():
    class Local(NumpyBackend):
        name = "local"

    with pytest.raises(dlaccel.InputError, match="isolate=False"):
        bench.run([Local()], bench.select_workloads(["dot"]), "tiny")
    report = bench.run([Local()], bench.select_workloads(["dot"]), "tiny", isolate=False)
    assert report["results"][0]["error"] is None


def test_logreg_data_is_the_courses_f_ordered_layout():
    workload = bench.WORKLOADS["logreg"]
    size = workload.size("tiny")
    data = workload.data(size, np.dtype(np.float32))
    X = data["X"]
    assert X.shape == (size["n_x"], size["m"]) and X.dtype == np.float32
    assert X.flags.f_contiguous and not X.flags.c_contiguous  # images.reshape(m, -1).T
    assert X.T.flags.c_contiguous  # the rows PyTorch gets, without a copy


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


def test_logreg_c_data_is_features_as_rows():
    workload = bench.WORKLOADS["logreg_c"]
    for profile in ("full", "quick", "tiny"):
        assert workload.size(profile) == {**bench.WORKLOADS["logreg"].size(profile), "order": "C"}
    size = workload.size("tiny")
    X = workload.data(size, np.dtype(np.float32))["X"]
    assert X.shape == (size["n_x"], size["m"]) and X.flags.c_contiguous and not X.flags.f_contiguous


TRAINING = ["logreg", "logreg_c", "shallow", "deep", "deep_course"]


@pytest.mark.parametrize("name", TRAINING)
def test_training_rows_are_judged_by_the_roofline(name):
    """The limit of a training step is the slower of its GEMMs at the GEMM rate and its bytes at the
    copy bandwidth; which one binds follows the machine's two rates."""
    from dlaccel.bench.record import Result, _fill_timing, apply_limits

    workload = bench.WORKLOADS[name]
    size = workload.size("full")
    dt = np.dtype(np.float32)
    flops, nbytes = workload.gemm_flops(size, dt), workload.min_bytes(size, dt)
    assert flops > 0 and nbytes >= size["m"] * dt.itemsize
    for gemm, copy in ((1e3, 1e-3), (1e-3, 1e3), (200.0, 25.0)):
        r = Result(name, workload.group, "numpy", workload.unit, size, size)
        _fill_timing(r, workload, 1.0, Timing([0.5, 0.5, 0.5], 1), dt)
        apply_limits(r, {"host": {"gemm_gflops": gemm, "copy_gbps": copy}})
        floor = max(flops / (gemm * 1e9), nbytes / (copy * 1e9))
        assert r.floor_s == pytest.approx(floor) and r.share_of_limit == pytest.approx(floor / 0.5)
        assert r.bound == ("gemm" if flops / gemm > nbytes / copy else "copy")
        assert r.rate / r.limit == pytest.approx(r.share_of_limit)


def test_the_course_net_moves_x_twice():
    size = bench.WORKLOADS["deep_course"].size("full")
    X_bytes = size["layers"][0] * size["m"] * 4
    assert 2 * X_bytes <= bench.WORKLOADS["deep_course"].min_bytes(size, np.dtype(np.float32)) <= 2.1 * X_bytes


def test_elementwise_rows_keep_the_copy_bandwidth_limit():
    from dlaccel.bench.record import Result, _fill_timing, apply_limits

    workload = bench.WORKLOADS["relu_fwd"]
    size = workload.size("tiny")
    r = Result(workload.name, workload.group, "numpy", workload.unit, size, size)
    _fill_timing(r, workload, 1.0, Timing([0.5], 1), np.dtype(np.float32))
    apply_limits(r, {"host": {"gemm_gflops": 1.0, "copy_gbps": 2.0}})
    assert r.limit == 2.0 and r.floor_s is None and r.bound is None


@pytest.mark.parametrize("name", TRAINING)
def test_training_steps_keep_the_parameters_update_parameters_returns(name):
    workload = bench.WORKLOADS[name]
    size = workload.size("tiny")
    data = workload.data(size, np.dtype(np.float64))
    steps = {}
    for be in (FreshUpdateBackend(), dlaccel.get_backend("numpy")):
        case = workload.build(be, size, data)
        steps[be.name] = [case.outputs(case.step()) for _ in range(3)]
    fresh, reference = steps["fresh_update"], steps["numpy"]
    assert reference[0]["cost"] != reference[2]["cost"]  # the steps do train
    for got, want in zip(fresh, reference):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12)


def test_duplicate_targets_are_timed_once():
    numpy_backend = dlaccel.get_backend("numpy")
    targets = bench.resolve_targets(["numpy", " NumPy", "torch", "loops", numpy_backend, "torch"])
    assert targets == [numpy_backend, "torch", dlaccel.get_backend("loops")]
    report = bench.run(["numpy", "numpy"], bench.select_workloads(["dot"]), "tiny", isolate=False)
    assert [(r["workload"], r["backend"]) for r in report["results"]] == [("dot", "numpy")]


def test_resolved_targets_are_not_probed_again(monkeypatch):
    targets = bench.resolve_targets(None)
    from dlaccel.bench import runner

    def probe(*args, **kwargs):
        pytest.fail("probed again")

    monkeypatch.setattr(runner.sysinfo, "available_backends", probe)
    monkeypatch.setattr(runner, "get_backend", lambda b: b if not isinstance(b, str) else probe())
    assert bench.resolve_targets(targets) == targets


@pytest.mark.parametrize("isolate", [True, False])
def test_the_peer_alone_without_torch_raises_before_any_work(monkeypatch, isolate):
    from dlaccel.bench import runner

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(runner, "measure_limits", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(dlaccel.MissingDependencyError, match="nothing to benchmark.*PyTorch is not installed"):
        bench.run(["torch"], bench.select_workloads(["dot"]), "tiny", isolate=isolate)


def test_compare_outputs_catches_a_few_wrong_elements_in_a_large_output():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((4096, 4096))
    ref = {"A": truth.astype(np.float32)}
    good = ref["A"].copy()
    assert bench.compare_outputs({"A": good}, ref, np.float32, {"A": truth})["passed"]
    bad = good.copy()
    bad[[0, 1000, 4095], [7, 2048, 4095]] += 1.0  # three wrong elements of 16.8M
    check = bench.compare_outputs({"A": bad}, ref, np.float32, {"A": truth})
    assert not check["passed"] and "elementwise" in check["message"]
    assert check["max_rel_error"] == pytest.approx(1.0 / np.abs(truth).max(), rel=1e-3)


def test_compare_outputs_scales_by_the_largest_magnitude_per_output():
    # Rounding in the small elements of an output is judged against its largest element.
    truth = {"dW": np.array([[1000.0, 1e-3]]), "db": np.array([[2.0]])}
    ref = {k: v.astype(np.float32) for k, v in truth.items()}
    off_small = {"dW": np.array([[1000.0, 1.5e-3]], np.float32), "db": ref["db"]}
    assert bench.compare_outputs(off_small, ref, np.float32, truth)["passed"]
    off_db = {"dW": ref["dW"], "db": np.array([[2.01]], np.float32)}  # 0.5 % of db's own magnitude
    assert not bench.compare_outputs(off_db, ref, np.float32, truth)["passed"]


def test_compare_outputs_with_nothing_to_compare_fails():
    assert not bench.compare_outputs({"A": np.ones((1, 1))}, {}, np.float64)["passed"]
