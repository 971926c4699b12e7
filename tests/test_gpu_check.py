"""benchmarks/gpu_check.py, dry-run on the CPU: its GPU sections driven through the kernel emulator
and a NumPy stand-in for CuPy, so the script that spends scarce device time is known to run, to
catch wrong kernels, and to report what it found. Its numbers here mean nothing; its logic does."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlaccel
from dlaccel import backends
from dlaccel.backends import cupy_gpu
from dlaccel.backends._cuda import KERNEL_FILES, kernel_names
from dlaccel.backends.base import ACTIVATIONS, LOSSES
from dlaccel.backends.cupy_gpu import CupyBackend

from . import cuda_emulator

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dry_run(monkeypatch, emulated, gpu_check):
    """gpu_check with the emulated backend registered as "cupy" and usable."""
    monkeypatch.setitem(sys.modules, "cupy", cupy_gpu.cupy)  # the stand-in that `emulated` installed
    monkeypatch.setitem(backends._PROBES, "cupy", lambda: None)
    monkeypatch.setattr(CupyBackend, "unavailable_reason", classmethod(lambda cls: None))
    monkeypatch.setitem(backends._instances, "cupy", emulated)
    real_timer = gpu_check.cuda_time_ms
    monkeypatch.setattr(gpu_check, "cuda_time_ms", lambda fn, **kw: real_timer(fn, warmup=1, reps=2, per_event=1))
    return gpu_check


def run_section(gpu_check, name: str) -> dict:
    rec = gpu_check.Recorder(None)
    gpu_check.SECTION_FUNCTIONS[name](rec, True)
    return {**rec.data, "status": "ok"}


def test_every_gpu_section_runs_and_passes_on_the_emulator(dry_run):
    results = {name: run_section(dry_run, name) for name in ("env", "correctness", "kernels", "training")}
    results["coldstart_cold"] = run_section(dry_run, "coldstart")
    for name, data in results.items():
        assert data["errors"] == [], name

    assert results["env"]["cupy_available"] is True
    correctness = results["correctness"]
    assert correctness["summary"]["failed"] == 0
    assert {item["op"] for item in correctness["items"]} == {
        "bias+activation forward", "bias+activation forward (Z)", "activation forward", "activation backward",
        "fused backward dA_prev", "fused backward dW", "fused backward db", "cost", "output gradient", "sgd update"}
    assert {item["detail"] for item in correctness["items"]} >= set(ACTIVATIONS) | set(LOSSES)

    timed = [item["kernel"] for item in results["kernels"]["items"]]
    fused = [f"bias+{act} forward" for act in ("relu", "sigmoid", "tanh", "leaky_relu", "linear", "softmax")]
    backward = [f"dA*g'({act})+db backward" for act in ("relu", "sigmoid", "tanh")]
    assert timed == fused + backward + ["output gradient AL-Y", "BCE cost", "sgd update"]
    assert all(item["fused_ms"] > 0 and item["unfused_ms"] > 0 for item in results["kernels"]["items"])
    assert results["kernels"]["copy_bandwidth"]["GBps"] > 0

    (step,) = results["training"]["items"]
    assert step["dims"] == "8x4x4x3" and step["cupy_finite"] is True
    assert step["cost_after"] < step["first_cost"]  # the timed steps trained the model

    assert results["coldstart_cold"]["kernels"] == sum(len(kernel_names(f)) for f in KERNEL_FILES)

    table = dry_run.table(results)
    assert "GPU CHECK NOT RUN" not in table
    assert f"correctness: {correctness['summary']['checks']} checks, 0 failed" in table
    assert all(name in table for name in timed)
    assert "8x4x4x3 m=64" in table and "kernel first use" in table
    assert dry_run.verdict(results) == (0, [])


def _skip_launch(grid, block, args):
    pass


def _launch_twice(kernel):
    def launch(grid, block, args):
        kernel(grid, block, args)
        kernel(grid, block, args)
    return launch


@pytest.mark.parametrize("kernel, broken, op", [
    ("output_grad", lambda k: _skip_launch, "output gradient"),  # outputs left as the poison
    ("sgd_update", _launch_twice, "sgd update"),  # wrong values
    ("act_backward_db_tanh", lambda k: _skip_launch, "fused backward db"),
])
def test_correctness_section_catches_a_broken_kernel(dry_run, monkeypatch, kernel, broken, op):
    real = CupyBackend._function

    def function(self, filename, name, dtype):
        found = real(self, filename, name, dtype)
        return broken(found) if name == kernel else found

    monkeypatch.setattr(CupyBackend, "_function", function)
    results = {"env": {"status": "ok", "cupy_available": True}, "correctness": run_section(dry_run, "correctness")}
    failed = [item for item in results["correctness"]["items"] if not item["ok"]]
    assert failed and {item["op"] for item in failed} >= {op}
    assert results["correctness"]["summary"]["failed"] == len(failed)
    assert dry_run.verdict(results) == (1, ["correctness"])


def test_verdict(gpu_check):
    ok = {"status": "ok"}
    gpu = {"env": {**ok, "cupy_available": True}}
    assert gpu_check.verdict(gpu) == (0, [])
    assert gpu_check.verdict({"env": {**ok, "cupy_available": False}}) == (2, [])
    assert gpu_check.verdict({**gpu, "kernels": {"status": "timed out after 90 s"}}) == (1, ["kernels"])
    assert gpu_check.verdict({**gpu, "tests": {**ok, "exit_code": 1}}) == (1, ["tests"])


def test_without_a_gpu_the_script_says_so_and_exits_2(tmp_path):
    if dlaccel.available_backends()["cupy"]["available"]:
        pytest.skip("a GPU is present: the real check is run with benchmarks/gpu_check.py itself")
    env = {k: v for k, v in os.environ.items() if k != "DLACCEL_BACKEND"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env={**env, "OUT": str(tmp_path)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "GPU CHECK NOT RUN" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["env"]["cupy_available"] is False and report["env"]["cupy_reason"]
    assert report["env"]["numpy"] == np.__version__


def test_cuda_timer_divides_by_the_calls_per_event_pair(monkeypatch, gpu_check):
    monkeypatch.setitem(sys.modules, "cupy", cuda_emulator.numpy_cupy())
    calls = []
    timed = gpu_check.cuda_time_ms(lambda: calls.append(1), warmup=2, reps=3, per_event=4)
    assert len(calls) == 2 + 3 * 4
    assert 0 < timed["min_ms"] <= timed["median_ms"]


def test_dask_cuda_section_is_skipped_cleanly_without_dask_cuda(monkeypatch, gpu_check):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import dask_cuda raises ImportError
    results = {"env": {"status": "ok", "cupy_available": True}, "dask_cuda": run_section(gpu_check, "dask_cuda")}
    assert results["dask_cuda"]["errors"] == []
    assert "dask-cuda is not installed" in results["dask_cuda"]["skipped"]
    assert "dask-cuda: skipped: dask-cuda is not installed" in gpu_check.table(results)
    assert gpu_check.verdict(results) == (0, [])


@pytest.fixture
def fake_dask_cuda(monkeypatch):
    """dask_cuda whose LocalCUDACluster is a LocalCluster of one thread in this process, so that its
    worker sees the emulated cupy backend (one: the emulator runs one kernel launch at a time)."""
    distributed = pytest.importorskip("distributed")
    import types

    def cluster(**kwargs):
        return distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, **kwargs)

    monkeypatch.setitem(sys.modules, "dask_cuda", types.SimpleNamespace(LocalCUDACluster=cluster))


def test_dask_cuda_section_dry_run_compares_the_cluster_fit_with_one_gpu(dry_run, fake_dask_cuda):
    results = {"env": {"status": "ok", "cupy_available": True}, "dask_cuda": run_section(dry_run, "dask_cuda")}
    dc = results["dask_cuda"]
    assert dc["errors"] == [] and dc["passed"] is True, dc
    assert dc["workers"] == 1 and dc["shards"] == dc["shards_on_gpu"] == 4
    assert dc["max_rel_cost_diff"] <= 1e-4 and dc["max_rel_param_diff"] <= 1e-4
    assert dc["local_ms"] > 0 and dc["cluster_ms"] > 0
    assert "dask-cuda, 1 GPU worker(s): fit equal to one GPU yes" in dry_run.table(results)
    assert dry_run.verdict(results) == (0, [])


def test_dask_cuda_section_fails_when_the_cluster_fit_differs(dry_run, fake_dask_cuda, monkeypatch):
    from dlaccel import distributed as dist_mod

    real = dist_mod.Group.sums

    def skewed(self, params, with_cost):
        cost, sums = real(self, params, with_cost)
        return cost, {k: g * 1.01 for k, g in sums.items()}

    monkeypatch.setattr(dist_mod.Group, "sums", skewed)
    results = {"env": {"status": "ok", "cupy_available": True}, "dask_cuda": run_section(dry_run, "dask_cuda")}
    assert results["dask_cuda"]["passed"] is False
    assert dry_run.verdict(results) == (1, ["dask_cuda"])
